"""CIESS: continuous input embedding size search by TD3, run inside RecBole's trainer."""
