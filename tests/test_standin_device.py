"""The stand-in device refuses what CUDA refuses, and accepts what CUDA accepts: the
whole-program test (tests/examples/test_celeba_on_a_device.py) counts on both."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts a Python with torch

HARNESS = Path(__file__).resolve().parent / "standin_device.py"

SCRIPT = '''
import sys
import torch

def main(argv):
    x = torch.randn(4, 3).to("standin")
    assert x.device.type == "standin"
    y = (x * 2 + torch.tensor(1.0)).sum(0)                  # a CPU scalar is accepted, as on CUDA
    picked = x[torch.tensor([0, 2])]                          # so are CPU indices
    net = torch.nn.Linear(3, 2).to("standin")
    net(x).sum().backward()
    assert net.weight.grad.device.type == "standin" and picked.shape == (2, 3)
    assert torch.equal(x.cpu() * 2, (x * 2).cpu()) and torch.equal(y.cpu(), (x.cpu() * 2 + 1).sum(0))
    if argv == ["refusals"]:  # each must raise; what it said is printed for the test to read
        tries = {"mix": lambda: torch.cdist(x.cpu(), x), "mix-elementwise": lambda: x + torch.ones(4, 3),
                 "numpy": lambda: x.numpy()}
        for name, attempt in tries.items():
            try:
                attempt()
            except Exception as err:
                print(f"{name} refused: {str(err).splitlines()[0]}")
            else:
                print(f"{name} accepted")
    return 0
'''


def _run(tmp_path, *args):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(HARNESS), str(script), *args], capture_output=True, text=True,
                          timeout=120)


def test_the_standin_device_runs_what_cuda_runs_and_counts_it(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "host reads" in result.stderr and "standin: 0 operations" not in result.stderr


def test_mixed_devices_and_numpy_are_refused_as_on_cuda(tmp_path):
    result = _run(tmp_path, "refusals")  # one process for the three: each start costs seconds
    assert result.returncode == 0, result.stderr
    said = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " refused: " in line or " accepted" in line)
    assert said.keys() == {"mix", "mix-elementwise", "numpy"}, result.stdout
    for name, message in (("mix", "same device"), ("mix-elementwise", "Expected all tensors to be on the same device"),
                          ("numpy", "can't convert standin:0 device type tensor to numpy")):
        assert said[name].startswith("refused: ") and message in said[name], (name, said[name])
