"""Did early stopping end a run, or the epoch cap? Recorded for every ``fit``.

A quality figure is only "converged" when RecBole's early stopping ended training; a run that
reached ``epochs`` may still have been improving. ``ConvergenceLog`` is passed to RecBole's
``Trainer.fit`` as its ``callback_fn`` (called after every evaluation) and then read off the
trainer: RecBole fires its stop exactly when ``cur_step`` exceeds ``stopping_step``. Its ``curve`` keeps
every evaluation, so quality after any number of epochs can be read off a run that trained to its stop.
"""


class ConvergenceLog:
    """Collects (epoch, valid score) at each evaluation, and with ``test`` (a callable returning test metrics,
    ``emb_test_curve``) the test metrics of the same weights; ``summary`` says how the run ended. ``earlier``
    (points of :meth:`curve`) starts it where a resumed run's curve stopped; ``save`` (a callable taking the
    curve) is called after every evaluation, so a stopped run keeps its curve."""

    def __init__(self, bigger=True, test=None, earlier=(), save=None):
        self.bigger = bigger
        self.history = [(point["epochs"] - 1, point["valid"]) for point in earlier]
        self.test = test
        self.tests = [point.get("test") for point in earlier]
        self.save = save

    def __call__(self, epoch_idx, valid_score):
        self.history.append((int(epoch_idx), float(valid_score)))
        # draws nothing from the training's random streams (loaders have their own)
        self.tests.append(None if self.test is None else
                          {name: float(value) for name, value in self.test().items()})
        if self.save is not None:
            self.save(self.curve())

    def curve(self):
        """One entry per evaluation: ``epochs`` trained so far (``best_epoch`` + 1 at the best), ``valid`` (the
        validation score) and, when recorded, ``test`` (the test metrics of those weights; recorded only, never
        used to pick them)."""
        return [{"epochs": epoch + 1, "valid": score, **({"test": test} if test is not None else {})}
                for (epoch, score), test in zip(self.history, self.tests)]

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
                "stopped_early": stopped_early, "converged": stopped_early, "curve": self.curve()}


def stream_convergence(segments):
    """A stream converged only if every segment did; the per-segment summaries stay in its rows."""
    return {"segments": len(segments), "segments_converged": sum(s["converged"] for s in segments),
            "epoch_cap": max((s["epoch_cap"] for s in segments), default=0),
            "epochs_run": sum(s["epochs_run"] for s in segments),
            "best_epoch": None, "stopped_early": all(s["stopped_early"] for s in segments),
            "converged": all(s["converged"] for s in segments)}
