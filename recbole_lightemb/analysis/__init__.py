"""Reading runs side by side: ``compare`` and the frontier ruler, with what they report (frequency buckets,
convergence, plots) and RecBole's hyper-parameter tuning over the plugin's keys."""
