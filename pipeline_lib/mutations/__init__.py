"""Mutation tasks for Phase 4 (issue 7): seed corpora, semantic mutation operators, verified task rows."""

from pipeline_lib.mutations.common import Mutant
from pipeline_lib.mutations.corpus import CORPUS_LAYOUT, CorpusError, SeedProgram, default_source, load_corpus
from pipeline_lib.mutations.generate import (
    LANGUAGES,
    Generation,
    SuiteRun,
    ToolchainMissing,
    check_toolchain,
    classify,
    default_runner,
    failure_excerpt,
    generate,
    split_programs,
    write_outputs,
)
from pipeline_lib.mutations.python_ops import PYTHON_OPERATORS, python_mutants
from pipeline_lib.mutations.rust_ops import RUST_OPERATORS, rust_mutants

__all__ = ["CORPUS_LAYOUT", "LANGUAGES", "PYTHON_OPERATORS", "RUST_OPERATORS", "CorpusError", "Generation", "Mutant",
           "SeedProgram", "SuiteRun", "ToolchainMissing", "check_toolchain", "classify", "default_runner",
           "default_source", "failure_excerpt", "generate", "load_corpus", "python_mutants", "rust_mutants",
           "split_programs", "write_outputs"]
