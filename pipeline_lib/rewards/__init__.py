"""Execution rewards: parse the fix a completion proposes, apply it to a fresh copy of the task, run it sandboxed.

    from pipeline_lib.rewards import ExecutionReward, RewardWeights, score_completion
    score = score_completion(task, completion)                     # one completion -> Score
    reward_funcs = [ExecutionReward(tasks, workers=4)]             # GRPOTrainer; a batch scored in 4 processes

See ``score.py`` for the stages and the reward formula, ``patch.py`` for the diff rules, ``completion.py`` for the
two completion forms and the Harmony format term, ``pipeline_lib/sandbox.py`` for the isolation.
"""

from pipeline_lib.rewards.completion import FixNotFound, ProposedFix, check_harmony_format, extract_fix
from pipeline_lib.rewards.patch import PatchError, apply_unified_diff
from pipeline_lib.rewards.score import RewardWeights, Score, load_task, reward, score_completion
from pipeline_lib.rewards.trl_reward import ExecutionReward

__all__ = ["ExecutionReward", "FixNotFound", "PatchError", "ProposedFix", "RewardWeights", "Score",
           "apply_unified_diff", "check_harmony_format", "extract_fix", "load_task", "reward", "score_completion"]
