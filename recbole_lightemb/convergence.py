"""Did early stopping end a run, or the epoch cap? Recorded for every ``fit``.

A quality figure is only "converged" when RecBole's early stopping ended training; a run that
reached ``epochs`` may still have been improving. ``ConvergenceLog`` is passed to RecBole's
``Trainer.fit`` as its ``callback_fn`` (called after every evaluation) and then read off the
trainer: RecBole fires its stop exactly when ``cur_step`` exceeds ``stopping_step``.
"""


class ConvergenceLog:
    """Collects (epoch, valid score) at each evaluation; ``summary`` says how the run ended."""

    def __init__(self, bigger=True):
        self.bigger = bigger
        self.history = []

    def __call__(self, epoch_idx, valid_score):
        self.history.append((int(epoch_idx), float(valid_score)))

    def best_epoch(self):
        """The epoch RecBole kept: the last one whose score reached the best so far (ties update, as in
        ``recbole.utils.early_stopping``)."""
        best, best_epoch = None, None
        for epoch, score in self.history:
            if best is None or (score >= best if self.bigger else score <= best):
                best, best_epoch = score, epoch
        return best_epoch

    def summary(self, trainer):
        """``epoch_cap``, ``epochs_run``, ``best_epoch``, ``stopped_early`` and ``converged`` of ``trainer``'s fit."""
        epochs_run = max(trainer.train_loss_dict) + 1 if trainer.train_loss_dict else 0
        stopped_early = bool(trainer.cur_step > trainer.stopping_step)
        return {"epoch_cap": int(trainer.epochs), "epochs_run": int(epochs_run), "best_epoch": self.best_epoch(),
                "epochs_trained": len(trainer.train_loss_dict),  # by this fit: fewer than epochs_run when resumed
                "stopping_step": int(trainer.stopping_step), "eval_step": int(trainer.eval_step),
                "stopped_early": stopped_early, "converged": stopped_early}


def stream_convergence(segments):
    """A stream converged only if every segment did; the per-segment summaries stay in its rows."""
    return {"segments": len(segments), "segments_converged": sum(s["converged"] for s in segments),
            "epoch_cap": max((s["epoch_cap"] for s in segments), default=0),
            "epochs_run": sum(s["epochs_run"] for s in segments),
            "best_epoch": None, "stopped_early": all(s["stopped_early"] for s in segments),
            "converged": all(s["converged"] for s in segments)}
