"""Bad config values: one line naming the key, the value and what is expected, before
anything is built (srlab/config/schema.py) -- and no run directory left behind."""
import subprocess
import sys

import pytest
import torch

from srlab.config.compose import validate_train_config
from srlab.config.schema import build_net, check_net
from srlab.errors import SrlabError

BAD = [
    # (overrides, what the one line must say)
    (["approach.optimizer.lr=abc"], "approach.optimizer.lr='abc': expected a number >= 0"),
    (["approach.optimizer.lr=-0.1"], "approach.optimizer.lr=-0.1: expected a number >= 0"),
    (["approach.optimizer.betas=0.9"], "approach.optimizer.betas=0.9: expected two numbers"),
    (["approach.ema.decay=1.5"], "approach.ema.decay=1.5"),
    (["data.patch_size=[64,64]"], "data.patch_size=[64, 64]: expected a positive integer"),
    (["data.batch_size=2.5"], "data.batch_size=2.5: expected an integer >= 1"),
    (["data.val_names=chelsea"], "data.val_names='chelsea': SamplesDataModule expects a list of str"),
    (["trainer.max_steps=abc"], "trainer.max_steps='abc': expected an integer"),
    (["trainer.precision=17"], "trainer.precision=17: Trainer expects one of"),
    (["net.channels=wide"], "net.channels='wide': UNet expects an integer"),
    (["net.residual=[1]"], "net.residual=[1]: UNet expects bool"),
    (["+net.chanels=16"], "net.chanels: UNet has no parameter 'chanels'; did you mean channels?"),
    (["+data.foo=1"], "data.foo: SamplesDataModule has no parameter 'foo'"),
    (["+approach.optimizer.momentumm=0.9"], "approach.optimizer.momentumm: Adam has no parameter"),
    (["approach.optimizer._target_=torch.optim.Adamm"], "torch.optim.Adamm: no such class"),
    (["loss.terms.mse.weight=-1"], "loss.terms.mse.weight=-1: expected a number >= 0"),
    (["speed.compile=sometimes"], "speed.compile='sometimes': expected true, false or gpu"),
    (["data=folder"], "missing value for data.train_dir"),
    (["data=folder", "data.train_dir=/no/such/folder"], "data.train_dir='/no/such/folder': expected an existing folder"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_is_one_line_naming_key_value_and_expectation(overrides, needle, make_cfg):
    cfg = make_cfg(overrides)
    with pytest.raises(SrlabError) as err:
        validate_train_config(cfg)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [[], ["experiment=edsr", "net.n_blocks=1", "net.channels=8"],
                                       ["experiment=gan"], ["experiment=vae"], ["trainer=cpu"]])
def test_real_configs_pass_the_check(overrides, make_cfg):
    validate_train_config(make_cfg(overrides, fast=False))


def test_net_that_refuses_a_scale_or_a_patch_is_one_line(make_cfg):
    cfg = make_cfg(["experiment=edsr", "net.n_blocks=1", "net.channels=8"], fast=False)
    cfg.net.scale = 5  # EDSR has no x5 upsampler
    with pytest.raises(SrlabError, match=r"net \(srlab.nets.edsr.EDSR\) cannot be built"):
        build_net(cfg.net)

    class Strided(torch.nn.Module):  # x4 through an 8x8 stride-8 conv: LR inputs of >= 8 px
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Conv2d(3, 3 * 32 * 32, 8, stride=8)

        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(self.down(x), 32)

    check_net(Strided(), 4, 32)  # LR 8 px: fine
    with pytest.raises(SrlabError, match=r"data.patch_size=16 \(LR 4 px at scale 4\) is too small"):
        check_net(Strided(), 4, 16)
    with pytest.raises(SrlabError, match="is scale=2 supported"):
        check_net(Strided(), 2, 32)


def test_cli_bad_value_leaves_no_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "approach.optimizer.lr=abc", "logger=wandb",
                          f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: approach.optimizer.lr='abc': expected a number >= 0, e.g. 1e-4 (0 freezes the net)"]
    assert not run_dir.exists()  # no .hydra copy, no log, no W&B run


@pytest.mark.parametrize("argv,line", [
    (["net.chanels=16"], "error: net.chanels=16: the config has no key net.chanels; did you mean net.channels? "
                         "(+net.chanels=16 adds a new key)"),
    (["logger=none", "data.batchsize=4"], "error: data.batchsize=4: the config has no key data.batchsize; "
                                          "did you mean data.batch_size? (+data.batchsize=4 adds a new key)"),
    (["net=nosuch"], "error: net=nosuch: no such option; use one of "),
    (["experiment=gan", "approach/critic=nope"], "error: approach/critic=nope: no such option; use one of patch, unet, vgg"),
])
def test_unknown_key_or_option_on_the_command_line_is_one_line(argv, line, capsys):
    """Hydra refuses these before srlab runs, in several lines; srlab-train says it in one."""
    from srlab.cli.entry import check_overrides

    with pytest.raises(SystemExit) as stop:
        check_overrides("train", argv)
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line)


def test_good_overrides_pass_the_command_line_check():
    from srlab.cli.entry import check_overrides

    check_overrides("train", ["net=edsr", "net.n_blocks=4", "+approach.optimizer.amsgrad=true", "logger=none"])
