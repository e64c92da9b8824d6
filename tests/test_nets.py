"""Nets: shapes at every scale, an untrained residual net is exactly bicubic, s2d is lossless."""
import pytest
import torch

from srlab.nets.autoencoder import AutoEncoder
from srlab.nets.bicubic import Bicubic
from srlab.nets.unet import UNet
from srlab.ops.imresize import imresize


@pytest.mark.parametrize("cls", [UNet, AutoEncoder])
@pytest.mark.parametrize("scale,s2d", [(2, 1), (3, 3), (4, 4), (8, 1), (4, 2)])
def test_shapes_and_odd_sizes(cls, scale, s2d):
    net = cls(scale, channels=8, depth=2, space_to_depth=s2d)
    lr = torch.rand(2, 3, 13, 11)
    assert net(lr).shape == (2, 3, 13 * scale, 11 * scale)


@pytest.mark.parametrize("cls", [UNet, AutoEncoder])
def test_untrained_residual_net_is_bicubic(cls):
    lr = torch.rand(1, 3, 12, 10)
    net = cls(4, channels=8, depth=2, space_to_depth=4)
    assert torch.allclose(net(lr), Bicubic(4)(lr), atol=1e-6)
    assert torch.allclose(Bicubic(4)(lr), imresize(lr, scale=4))


def test_non_residual_net_predicts_the_image_itself():
    net = UNet(2, channels=8, depth=2, residual=False)
    assert not torch.allclose(net(torch.rand(1, 3, 8, 8)), Bicubic(2)(torch.rand(1, 3, 8, 8)))


def test_unet_skips_make_it_differ_from_the_autoencoder():
    # same widths, same seed: the only difference is the skip path, so outputs must differ
    torch.manual_seed(0)
    u = UNet(2, channels=8, depth=2, residual=False)
    torch.manual_seed(0)
    a = AutoEncoder(2, channels=8, depth=2, residual=False)
    lr = torch.rand(1, 3, 8, 8)
    assert u(lr).shape == a(lr).shape and not torch.allclose(u(lr), a(lr))
