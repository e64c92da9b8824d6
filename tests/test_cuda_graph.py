"""speed.cuda_graph (issues 23, 29): the captured training step. Without CUDA its code path runs
eager and must equal Lightning's automatic step exactly; `CpuGraph` stands in for a CUDA graph
on the CPU (the recorded body rerun per replay, its results written into the capture's output
tensors) so the captured path's logic is tested here too. The CUDA side is tests/test_cuda_graph_on_cuda.py
(scripts/gpu_check.sh)."""
import logging
import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from srlab.approaches.regression import RegressionSR
from srlab.cli.train import build, train
from srlab.errors import SrlabError
from srlab.training import cuda_graph
from srlab.training.cuda_graph import GraphedStep

STEPS = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2", "approach.ema.decay=0.9", "lr_schedule=cosine",
         "data.val_crop=32"]


class CpuGraph:
    """A CUDA graph's behaviour on the CPU: nothing runs at the capture; each replay runs the
    recorded body on fresh gradients and writes its loss into the tensors the capture made,
    leaving the step's Python references alone (a graph never rebinds them)."""

    def __init__(self, step: GraphedStep, optimizer):
        self.step, self.optimizer = step, optimizer
        names = list(step.approach.loss.weights)
        self.total, self.terms = torch.zeros(()), {n: torch.zeros(()) for n in names}
        step.static["total"], step.static["terms"] = self.total, self.terms

    def replay(self):
        s = self.step.static
        before = s["total"], s["terms"]
        self.optimizer.zero_grad(set_to_none=True)  # a graph's backward writes its gradients afresh
        self.step._captured_body(self.optimizer)
        self.total.copy_(s["total"])
        for name, value in s["terms"].items():
            self.terms[name].copy_(value)
        s["total"], s["terms"] = before


@pytest.fixture
def cpu_graph(monkeypatch):
    monkeypatch.setattr(GraphedStep, "_record", lambda self, optimizer: CpuGraph(self, optimizer))


def weights(run_dir, name="last"):
    state = torch.load(run_dir / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=False)
    return state["state_dict"], state["global_step"]


def finite_state(state) -> bool:
    tensors = [v for v in state["state_dict"].values() if torch.is_tensor(v) and v.is_floating_point()]
    for opt in state["optimizer_states"]:
        tensors += [v for s in opt["state"].values() for v in s.values() if torch.is_tensor(v)]
    return all(torch.isfinite(t).all() for t in tensors)


def test_the_graphed_step_run_eager_equals_the_automatic_step(make_cfg, tmp_path, monkeypatch, caplog):
    """Same seed, same batches: weights (net and EMA), step count and logged losses are equal,
    also when the capture fails (it falls back with one line and leaves float learning rates)."""
    runs = {}
    for switch in ("false", "true", "failed"):
        if switch == "failed":
            original = RegressionSR.use_graphed_step
            monkeypatch.setattr(RegressionSR, "use_graphed_step", lambda self, capture: original(self, True))

            def record(self, optimizer):  # a capture that dies half-way, gradients left in its pool
                assert all(torch.is_tensor(g["lr"]) for g in optimizer.param_groups)
                for p in self.approach.net.parameters():
                    p.grad = torch.full_like(p, math.nan)
                raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

            monkeypatch.setattr(GraphedStep, "_record", record)
        cfg = make_cfg([*STEPS, f"speed.cuda_graph={'false' if switch == 'false' else 'true'}", "logger=csv"],
                       run_dir=tmp_path / switch)
        with caplog.at_level(logging.WARNING, logger="srlab.training.cuda_graph"):
            metrics = train(cfg)
        runs[switch] = (weights(tmp_path / switch), metrics,
                        (next((tmp_path / switch).rglob("metrics.csv"))).read_text())
    (eager, step_e) = runs["false"][0]
    for switch in ("true", "failed"):
        graphed, step_g = runs[switch][0]
        assert step_e == step_g == 6 and eager.keys() == graphed.keys()
        assert all(torch.equal(eager[k], graphed[k]) if torch.is_tensor(eager[k]) else eager[k] == graphed[k]
                   for k in eager)
        assert runs["false"][1]["val/psnr_y"] == runs[switch][1]["val/psnr_y"]
    losses = [[line.split(",") for line in text.splitlines()] for _, _, text in runs.values()]
    logged = [[row[rows[0].index("train/loss")] for row in rows[1:] if row[rows[0].index("train/loss")]]
              for rows in losses]
    assert logged[0] and logged[0] == logged[1] == logged[2]
    warnings = [r.getMessage() for r in caplog.records if r.name == "srlab.training.cuda_graph"]
    assert warnings == ["speed.cuda_graph: runs eager: the capture failed (RuntimeError: CUDA error: "
                        "operation not permitted when stream is capturing)"]
    state = torch.load(tmp_path / "failed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    groups = state["optimizer_states"][0]["param_groups"]
    assert all(type(g["lr"]) is float and g["capturable"] is False for g in groups)


def test_approaches_that_cannot_be_captured_run_eager_with_one_line(make_cfg, caplog):
    with caplog.at_level(logging.INFO):
        _, model, _, _ = build(make_cfg(["approach=vae", "net=cvae_unet", "speed.cuda_graph=true", "logger=none"],
                                         fast=False))
    assert model.graphed is None and model.automatic_optimization
    assert any("speed.cuda_graph: runs eager" in r.getMessage() for r in caplog.records)


def poison_step(model, at_step: int):
    """One NaN HR pixel in the batch of the step `at_step` (1-based)."""
    original = model.training_step

    def training_step(batch, batch_idx):
        if model.global_step == at_step - 1:
            batch = {**batch, "hr": batch["hr"].clone()}
            batch["hr"][0, 0, 0, 0] = math.nan
        return original(batch, batch_idx)

    model.training_step = training_step


@pytest.mark.parametrize("capture", [pytest.param(False, marks=pytest.mark.slow), True], ids=["eager", "graph"])
def test_a_nan_never_reaches_last_ckpt(make_cfg, cpu_graph, capture, caplog):
    """A NaN HR pixel at step 5: eager skips the update; the graph applies it, and training stops
    at the next check without saving, naming the last finite checkpoint (step 4)."""
    cfg = make_cfg(["trainer.max_steps=8", "trainer.val_check_interval=4", "trainer.log_every_n_steps=4",
                    "speed.cuda_graph=true", "data.val_crop=32", "approach.ema.decay=0.9"])
    datamodule, model, trainer, _ = build(cfg)
    model.use_graphed_step(capture=capture)
    poison_step(model, 5)
    last = f"{cfg.paths.output_dir}/checkpoints/last.ckpt"
    with caplog.at_level(logging.WARNING, logger="srlab.training.nonfinite"):
        if capture:
            with pytest.raises(SrlabError) as err:
                trainer.fit(model, datamodule=datamodule)
            message = str(err.value)
            assert "\n" not in message and message.startswith("non-finite loss under speed.cuda_graph between "
                                                               "steps 5 and 8")
            assert f"resume from {last} (step 4)" in message
        else:
            trainer.fit(model, datamodule=datamodule)
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == (4 if capture else 8) and finite_state(state)
    skipped = [r.getMessage() for r in caplog.records if "update skipped" in r.getMessage()]
    assert len(skipped) == (0 if capture else 1)  # under the graph no update is said to be skipped


def tiny_model() -> RegressionSR:
    from functools import partial

    from srlab.losses.mix import LossMix

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))
    return RegressionSR(net, LossMix({"mse": {"fn": torch.nn.MSELoss()}}), partial(torch.optim.Adam, lr=1e-3),
                        ema={"decay": 0.9})


def test_an_odd_batch_runs_eager_and_leaves_the_graph_its_buffers(cpu_graph):
    model = tiny_model()
    step = GraphedStep(model, capture=True)
    optimizer = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    shapes = [4] * 5 + [3] + [4] * 3  # warm-up, capture, replay, the odd batch, replays
    totals = []
    for b in shapes:
        batch = {"lr": torch.rand(b, 3, 8, 8, generator=g), "hr": torch.rand(b, 3, 32, 32, generator=g)}
        totals.append(float(step(batch, optimizer)[0]))
    assert step.graph is not None and step.static["lr"].shape[0] == 4 and step.replays == 5
    after = totals[5:]
    assert len(set(after)) == len(after) and all(math.isfinite(t) for t in totals)  # logged values keep changing


def test_optimizers_resume_stepping_the_way_this_run_steps():
    """A captured run's checkpoint (capturable=True) resumed on the CPU, and the reverse flag."""
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()
    state["param_groups"][0]["capturable"] = True
    resumed = torch.optim.Adam([p], lr=0.1)
    resumed.load_state_dict(state)
    with pytest.raises(AssertionError, match="capturable"):
        resumed.step()
    cuda_graph.set_capturable(resumed, False)
    resumed.step()
    assert resumed.param_groups[0]["capturable"] is False and resumed.state[p]["step"].device.type == "cpu"
    sgd = torch.optim.SGD([p], lr=0.1)
    cuda_graph.set_capturable(sgd, True)  # no such option: left alone
    assert "capturable" not in sgd.param_groups[0]


@pytest.mark.parametrize("switch", ["false", pytest.param("true", marks=pytest.mark.slow)])
def test_a_captured_checkpoint_resumes_on_the_cpu(make_cfg, tmp_path, switch):
    """What a GPU run with speed.cuda_graph=true saves (capturable=True) resumes on the CPU,
    captured or not, instead of failing its first step."""
    datamodule, model, trainer, _ = build(make_cfg(["trainer.max_steps=1"], run_dir=tmp_path / "a"))
    trainer.fit(model, datamodule=datamodule)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    for group in state["optimizer_states"][0]["param_groups"]:
        group["capturable"] = True
    torch.save(state, ckpt)
    datamodule, model, trainer, _ = build(make_cfg(["trainer.max_steps=3", f"speed.cuda_graph={switch}"],
                                                   run_dir=tmp_path / "b"))
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt))
    assert trainer.global_step == 3
    assert trainer.optimizers[0].param_groups[0]["capturable"] is False


def test_distribution_is_read_from_the_built_trainer(make_cfg, caplog):
    one = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    two = pl.Trainer(accelerator="cpu", devices="2", logger=False, enable_progress_bar=False)
    assert cuda_graph.distributed_reason(one) is None
    assert "over 2 processes" in cuda_graph.distributed_reason(two)
    sharded = SimpleNamespace(world_size=1, strategy=type("FSDPStrategy", (), {})())
    assert cuda_graph.distributed_reason(sharded).startswith("FSDPStrategy wraps the step")
    _, model, _, _ = build(make_cfg(["speed.cuda_graph=true"]))
    assert model.graphed is not None and not model.automatic_optimization
    model.trainer = two
    with caplog.at_level(logging.INFO, logger="srlab.approaches.regression"):
        model.setup("fit")
    assert model.graphed is None and model.automatic_optimization
    assert [r.getMessage() for r in caplog.records if r.name == "srlab.approaches.regression"] == [
        "speed.cuda_graph: runs eager: DDPStrategy over 2 processes: the gradient all-reduce runs outside the graph"]


def test_an_optimizer_without_capturable_runs_eager():
    params = [torch.nn.Parameter(torch.randn(2))]

    def build_one(factory):
        return {"optimizer": factory(params=params)}

    config, reason = cuda_graph.capturable_optimizer(build_one, lambda **kw: torch.optim.SGD(lr=0.1, **kw))
    assert isinstance(config["optimizer"], torch.optim.SGD) and "SGD has no capturable option" in reason
    config, reason = cuda_graph.capturable_optimizer(build_one, lambda **kw: torch.optim.Adam(lr=0.1, **kw))
    assert reason is None and config["optimizer"].defaults["capturable"] is True


def test_nets_that_copy_from_the_host_are_not_captured():
    hat = SimpleNamespace(arch_id="HAT", hyperparameters={"img_size": 64})
    dat = SimpleNamespace(arch_id="DAT", hyperparameters={"img_size": 64}, multiple=8, minimum=8)
    assert "copies a mask from the host" in cuda_graph.net_reason(hat, (64, 64))
    assert cuda_graph.net_reason(dat, (64, 64)) is None
    assert "net.img_size" in cuda_graph.net_reason(dat, (48, 48))
    assert cuda_graph.net_reason(torch.nn.Conv2d(3, 3, 3), (48, 48)) is None


def test_imresize_blocks_outlive_the_cache_while_held():
    import weakref

    from srlab.ops import imresize as module

    held = []
    with module.holding_blocks(held):
        module.imresize(torch.rand(1, 3, 13, 11), scale=3)
    assert held
    refs = [weakref.ref(b[4]) for blocks in held for b in blocks]
    module._blocks_on.cache_clear()
    assert all(r() is not None for r in refs)  # the graph's inputs are still alive
    before = len(held)
    module.imresize(torch.rand(1, 3, 13, 11), scale=3)
    assert len(held) == before  # outside the block nothing more is held
