"""Phase 2: agent SFT — LoRA r128 (attention + experts) on the merged tool-calling model, packed trajectories.

    python3 scripts/14_train_core_agent.py --base_model checkpoints/gpt-oss-20b-coding-tui-merged/hf \\
        --no-merge-lang-adapter --train_data_path data/coding_tui/agent_traj/train \\
        --per_device_train_batch_size 1 --gradient_accumulation_steps 24 --max_steps -1 --num_train_epochs 3 \\
        --output_dir checkpoints/agent_sft --eval_strategy no --max_seq_length 32768 [--lora_r 128] \\
        [--packing | --no-packing] [--backend auto|unsloth|hf|fast] [--resume_from_checkpoint DIR|auto]

Defaults come from configs/agent_sft.yaml (loaded when --config is not given); CLI flags win.
- Packing (default on): ``<train_data_path>_packed_<max_seq_length>/`` (e.g. data/coding_tui/agent_traj/
  train_packed_32768/) is used when present and made from the same data; otherwise the data is packed now and saved
  there (pipeline_lib/pack_sft.py). Conversations never attend to each other (position_ids restart per
  conversation; checked on real batches before training).
- ``--no-merge-lang-adapter``: accepted for the writeup's command line. The TUI pipeline has no language adapter, so
  nothing is merged by default either way. A language pipeline can pass ``--lang_adapter PATH``: that LoRA is merged
  into --base_model before the new r128 LoRA is added (the two flags together are an error).
- ``--eval_strategy steps|epoch`` holds out ``--eval_split_size`` of the rows and reports eval token accuracy.

Writes <output_dir>/checkpoint-N/ and <output_dir>/final/ (adapter, tokenizer, trainer_state.json, provenance.json,
phase_metrics.json). Exits non-zero if the expert LoRA did not change or a resume trained nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.interpreter import require_modules  # noqa: E402

require_modules()  # before any import that needs them: names this interpreter and the fix

from pipeline_lib import phases  # noqa: E402
from pipeline_lib.config import default_config  # noqa: E402
from pipeline_lib.unsloth_utils import import_unsloth_first  # noqa: E402

# before trl/transformers/peft, which Unsloth patches on import; only when the phase will train on Unsloth
import_unsloth_first(sys.argv[1:], default_config(phases.AGENT_SFT.name))

from pipeline_lib.checkpoints import resolve_resume_checkpoint, train_to_max_steps  # noqa: E402
from pipeline_lib.sft import (  # noqa: E402
    banner,
    build_sft_trainer,
    check_phase_outcome,
    choose_phase_backend,
    final_evaluate,
    finalize_sft_phase,
    load_adapted_model,
    prepare_sft_data,
    summary_line,
)
from pipeline_lib.sft_config import AgentScriptArguments, AgentSFTConfig, parse_phase_args  # noqa: E402
from pipeline_lib.sft_data import print_mask_example  # noqa: E402

PHASE = phases.AGENT_SFT.name
DEFAULT_CONFIG = default_config(PHASE)


def main() -> None:
    script_args, training_args = parse_phase_args(AgentScriptArguments, AgentSFTConfig, DEFAULT_CONFIG)
    from pipeline_lib.live import add_live_metrics, configure_reporting
    from pipeline_lib.throughput import ThroughputCallback
    from pipeline_lib.unsloth_utils import (
        load_training_tokenizer,
        snapshot_parameters,
        verify_lora_updates,
    )

    model_path = script_args.base_model
    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"--base_model {model_path}: no such folder (run Phase 1.5, the merge, first)")
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    tokenizer = load_training_tokenizer(model_path)
    packing = choose_phase_backend(PHASE, model_path, script_args, training_args)

    data = prepare_sft_data(script_args.train_data_path, tokenizer, max_seq_length=training_args.max_seq_length,
                            packing=packing, eval_strategy=str(training_args.eval_strategy.value),
                            eval_split_size=script_args.eval_split_size, seed=training_args.seed,
                            text_field=training_args.dataset_text_field,
                            max_train_samples=script_args.max_train_samples,
                            num_proc=training_args.dataset_num_proc, packing_note=script_args.packing_note)
    if script_args.print_mask_example:
        print_mask_example(data.train, tokenizer)

    model, model_info = load_adapted_model(model_path, script_args, training_args,
                                           merge_adapter=script_args.lang_adapter)
    banner(PHASE, model_path, script_args, training_args, data, model_info)
    before = snapshot_parameters(model)
    throughput = ThroughputCallback()
    configure_reporting(PHASE, training_args.report_to, training_args.output_dir)
    trainer = build_sft_trainer(model, tokenizer, training_args, data, callbacks=[throughput])
    add_live_metrics(trainer, PHASE)

    train_to_max_steps(trainer, resume)
    final_evaluate(trainer, data)

    lora_check = verify_lora_updates(before, trainer.model, require_experts=model_info["experts_targeted"])
    metrics = finalize_sft_phase(trainer, tokenizer, phase=PHASE, base_model=model_path, script_args=script_args,
                                 training_args=training_args, model_info=model_info, data=data,
                                 lora_check=lora_check, resumed_from=resume, throughput=throughput.summary())
    check_phase_outcome(metrics)
    print(summary_line(metrics, training_args.output_dir))


if __name__ == "__main__":
    main()
