"""
Mixed precision: bf16 autocast of the network forward passes where the hardware runs bf16 matrix products natively.
Losses, targets, the temperature and the optimizer state stay fp32.
"""

import contextlib
from collections.abc import Iterator

import torch as th

# The values of the ``precision`` argument
PRECISIONS = ("auto", "fp32", "bf16")


def bf16_is_fast(device: th.device) -> bool:
    """
    :param device: Torch device
    :return: Whether bf16 matmuls are native on it: on CPU, AMX (Intel Sapphire Rapids and later) or AVX512_BF16
        (AMD Zen 4 and later, Intel Cooper Lake); on CUDA, compute capability >= 8. Elsewhere bf16 is emulated and
        slower than fp32 (50x on an AVX2-only CPU)
    """
    if device.type == "cuda":
        return th.cuda.is_available() and th.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return any(bool(getattr(th.cpu, probe, lambda: False)()) for probe in _CPU_BF16_PROBES)
    return False


# torch's probes of the CPU's native bf16 matrix instructions
_CPU_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")


class Precision:
    """
    The resolved ``precision`` setting of a model.

    :param precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where :func:`bf16_is_fast`)
    :param device: The model's device
    """

    def __init__(self, precision: str, device: th.device):
        self.device = device
        self.bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(device))

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast when enabled, else nothing."""
        if self.bf16:
            with th.autocast(device_type=self.device.type, dtype=th.bfloat16):
                yield
        else:
            yield
