"""engine.precision: cuDNN kept off TF32 while rnnlab computes on CUDA, the flag restored after,
nested and across threads; CPU work leaves it alone. (The flag is a plain setting, so this runs
without a GPU; bench/check_cuda.py measures what it changes on one.)"""

from __future__ import annotations

import threading

import pytest
import torch

from engine.precision import float32_cudnn


@pytest.fixture(autouse=True)
def tf32_on():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # torch's default
    yield
    torch.backends.cudnn.allow_tf32 = before


def test_cuda_work_turns_tf32_off_and_back_on():
    with float32_cudnn("cuda"):
        inside = torch.backends.cudnn.allow_tf32
        with float32_cudnn(torch.device("cuda", 0)):  # nested: still off after the inner one ends
            pass
        after_inner = torch.backends.cudnn.allow_tf32
    assert (inside, after_inner, torch.backends.cudnn.allow_tf32) == (False, False, True)


def test_cpu_work_leaves_the_flag_alone():
    with float32_cudnn("cpu"):
        assert torch.backends.cudnn.allow_tf32 is True


def test_a_user_setting_of_false_is_kept():
    torch.backends.cudnn.allow_tf32 = False
    with float32_cudnn("cuda"):
        pass
    assert torch.backends.cudnn.allow_tf32 is False


def test_concurrent_users_restore_only_when_the_last_leaves():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with float32_cudnn("cuda"):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with float32_cudnn("cuda"):
            second_in.set()
            first_out.wait(5)
            seen["while other left"] = torch.backends.cudnn.allow_tf32

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"while other left": False}
    assert torch.backends.cudnn.allow_tf32 is True


def test_training_generator_holds_float32_while_suspended_on_cuda(monkeypatch):
    """The trainer's loop runs inside float32_cudnn for its device (CPU here: untouched)."""
    from engine import trainer

    devices = []
    real = trainer.float32_cudnn

    def spy(device):
        devices.append(str(device))
        return real(device)

    monkeypatch.setattr(trainer, "float32_cudnn", spy)
    from engine.models import ModelConfig
    from engine.training import TrainConfig

    ids = torch.randint(0, 5, (400,)).numpy()
    events = list(trainer.train(ids, ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4),
                                TrainConfig(epochs=1, batch_size=2, num_steps=5, sample_every=0, device="cpu",
                                            threads=1)))
    assert devices == ["cpu"] and type(events[-1]).__name__ == "Finished"
