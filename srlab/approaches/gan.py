"""GAN SR (seed approach 4): a generator trained with a content loss mix plus a critic's verdict.

Pixel losses regress to the mean of all plausible HR images and blur; an adversarial term
pushes the generator toward images a critic cannot tell from real HR, trading a little PSNR
for texture (SRGAN, ESRGAN). Each batch:
1. generator step: content = the loss mix on (SR, HR), as in regression; adversarial =
   `adversarial.generator(critic(SR), critic(HR))`; total = content + adv_weight x adversarial
   (adversarial left out during the first `warmup_steps` batches). The critic is frozen here.
2. critic step: `adversarial.critic(critic(HR), critic(SR.detach()))`.
Logged: `train/loss` (generator total), `train/loss/<term>` and `.../weighted/<term>` for the
content terms and `adversarial`, `train/critic/loss`, and the critic's mean logits on real
and fake (`train/critic/real`, `train/critic/fake`: their gap shows who is winning).

Good GANs start from a PSNR-trained generator (ESRGAN): `init_from=<.ckpt or .srlab.pt>`
copies the net weights of a regression run (same net config) before training; resuming with
ckpt_path restores both nets and both optimizers. Two optimizers means manual optimisation,
and Lightning then counts *both* optimizer steps in `trainer.global_step` (2 per batch): the
config halves the scheduler's horizon accordingly (configs/approach/gan.yaml).
"""
from collections.abc import Callable

from torch import nn

from srlab.approaches.base import SRApproach
from srlab.errors import SrlabError
from srlab.losses.adversarial import AdversarialLoss
from srlab.losses.mix import LossMix


class GanSR(SRApproach):
    def __init__(
        self,
        net: nn.Module,
        loss: LossMix,
        critic: nn.Module,
        adversarial: AdversarialLoss,
        optimizer: Callable,
        critic_optimizer: Callable,
        scheduler: Callable | None = None,
        critic_scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        adv_weight: float = 5e-3,
        warmup_steps: int = 0,
        init_from: str | None = None,
        scale: int = 4,
        ema: dict | None = None,
        max_nonfinite_skips: int | None = 5,
    ):
        super().__init__(net, loss, scale, ema, max_nonfinite_skips)
        self.automatic_optimization = False
        self.critic = critic
        self.adversarial = adversarial
        self.factories = (optimizer, critic_optimizer, scheduler, critic_scheduler)
        self.scheduler_interval = scheduler_interval
        self.adv_weight = float(adv_weight)
        self.warmup_steps = int(warmup_steps)
        if init_from:
            self.init_generator(init_from)

    def init_generator(self, path: str) -> None:
        from srlab.inference.checkpoint import load_net

        pretrained, _ = load_net(path)
        try:
            self.net.load_state_dict(pretrained.state_dict())
        except RuntimeError:
            raise SrlabError(f"init_from={path} holds a {type(pretrained).__name__} whose weights do not fit this "
                             f"{type(self.net).__name__}: use the same net config as that run") from None

    def training_step(self, batch: dict, batch_idx: int) -> None:
        lr, hr = batch["lr"], batch["hr"]
        opt_g, opt_c = self.optimizers()
        n = hr.shape[0]
        sr = self.net(lr)
        # the critic on HR, once per batch: with its graph for the critic step, detached for ragan's generator loss.
        # With sharpened targets (realesrgan's sharpen_gt) the content loss sees them, the critic plain HR.
        real = self.critic(batch.get("hr_plain", hr))

        # 1. generator, critic frozen (toggle_optimizer turns off the critic's requires_grad)
        self.toggle_optimizer(opt_g)
        content, terms = self.loss(sr, hr)
        batches_done = self.global_step // 2  # Lightning counts both optimizers' steps
        use_adv = self.adv_weight > 0 and batches_done >= self.warmup_steps
        total = content
        if use_adv:
            adversarial = self.adversarial.generator(self.critic(sr), real.detach())
            total = content + self.adv_weight * adversarial
        g_terms = {**terms, "adversarial": adversarial} if use_adv else terms
        if self.finite(total, g_terms, "generator loss"):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
            opt_g.step()
        self.untoggle_optimizer(opt_g)

        # 2. critic, on the same SR batch, detached
        self.toggle_optimizer(opt_c)
        fake = self.critic(sr.detach())
        critic_loss = self.adversarial.critic(real, fake)
        if self.finite(critic_loss, {"critic": critic_loss}, "critic loss"):
            opt_c.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            opt_c.step()
        self.untoggle_optimizer(opt_c)

        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()
        if not self.train_logs_due():
            return
        self.log_loss("train", total, terms, n)
        kw = dict(on_step=True, on_epoch=False, batch_size=n)
        if use_adv:
            self.log("train/loss/adversarial", adversarial, **kw)
            self.log("train/loss/weighted/adversarial", self.adv_weight * adversarial, **kw)
        self.log("train/critic/loss", critic_loss, prog_bar=True, **kw)
        self.log("train/critic/real", real.mean(), **kw)
        self.log("train/critic/fake", fake.mean(), **kw)

    def configure_optimizers(self):
        optimizer, critic_optimizer, scheduler, critic_scheduler = self.factories
        return (self.build_optimizer(self.net, optimizer, scheduler, self.scheduler_interval),
                self.build_optimizer(self.critic, critic_optimizer, critic_scheduler, self.scheduler_interval))
