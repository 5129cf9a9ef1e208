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


def _cpu_training(epochs: int = 2):
    from engine import trainer
    from engine.config import ModelConfig, TrainConfig

    ids = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(0)).numpy()
    return trainer.train(ids, ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4),
                         TrainConfig(epochs=epochs, batch_size=2, num_steps=5, sample_every=0, device="cpu",
                                     threads=1, log_interval_s=1e9, log_every_steps=10))


@pytest.mark.parametrize("setting", [True, False])
def test_cpu_training_leaves_the_users_flag_between_events(setting):
    """Training on the CPU leaves cuDNN's flag alone: whatever the user set stays in force while the
    generator is suspended at each event, and after it ends. (That training on CUDA holds it off needs a
    GPU; nothing here fakes one.)"""
    torch.backends.cudnn.allow_tf32 = setting
    seen = [torch.backends.cudnn.allow_tf32 for _ in _cpu_training()]
    assert len(seen) > 5 and seen == [setting] * len(seen)
    assert torch.backends.cudnn.allow_tf32 is setting


def test_a_suspended_cpu_training_neither_holds_nor_restores_a_cuda_users_flag():
    events = _cpu_training()
    next(events)  # training has started and is suspended at its first event
    with float32_cudnn("cuda"):  # a CUDA user (generation, say) comes and goes meanwhile
        inside = [torch.backends.cudnn.allow_tf32 for _, _ in zip(range(3), events)]
    after = [torch.backends.cudnn.allow_tf32 for _ in events]
    assert inside == [False] * 3 and after == [True] * len(after) and len(after) > 3
    # The other order: the CUDA user was there first and leaves while training is suspended.
    with float32_cudnn("cuda"):
        events = _cpu_training()
        inside = [torch.backends.cudnn.allow_tf32 for _, _ in zip(range(3), events)]
    after = [torch.backends.cudnn.allow_tf32 for _ in events]
    assert inside == [False] * 3 and after == [True] * len(after) and torch.backends.cudnn.allow_tf32 is True
