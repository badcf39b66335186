"""The step progress bar."""


def test_progress_bar_shows_each_modules_own_validation():
    """The progress bar reads ``validation_postfix()``: the learned prior's validation is a
    dict, the autoencoder's an EvalResult (the bar once read ``.selection`` off the prior's)."""
    from types import SimpleNamespace

    import torch

    from depthq.runtime import StepProgress

    class Prior:  # what PriorModule.validation_postfix reads
        last_validation = {"step": 25, "bits_per_dim": 0.12345}

    from depthq.prior.train import PriorModule

    prior = Prior()
    assert PriorModule.validation_postfix(prior) == {"val bits/dim": "0.1235"}
    progress = StepProgress(refresh_every=25)
    shown = {}
    progress.bar = SimpleNamespace(n=0, update=lambda n: None, set_postfix=lambda p, refresh: shown.update(p))
    trainer = SimpleNamespace(global_step=25, callback_metrics={"train/loss": torch.tensor(0.5)})
    module = SimpleNamespace(validation_postfix=lambda: PriorModule.validation_postfix(prior))
    progress.on_train_batch_end(trainer, module, None, None, 0)
    assert shown == {"loss": "0.500", "val bits/dim": "0.1235"}
