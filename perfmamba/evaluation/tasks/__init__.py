"""lm-eval task configs that run offline (added to lm-eval's include_path by perfmamba.evaluation)."""
