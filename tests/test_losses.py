import pytest
import torch
from torch.optim import Adam
from torchgan import losses as tg
from torchgan.losses import DiscriminatorLoss, GeneratorLoss
from torchgan.trainer import Trainer

from torchgan_sagan.layers import spectral_norm_of
from torchgan_sagan import train_step
from torchgan_sagan.losses import WassersteinDiscriminatorLoss, WassersteinGeneratorLoss
from torchgan_sagan import (
    HingeDiscriminatorLoss,
    HingeGeneratorLoss,
    LeastSquaresDiscriminatorLoss,
    LeastSquaresGeneratorLoss,
    SAGANDiscriminator,
    SAGANGenerator,
    hinge_discriminator_loss,
    hinge_generator_loss,
)

DX = torch.tensor([0.5, -2.0, 1.5])
DGZ = torch.tensor([-1.5, 0.2, 3.0])
# By hand: relu(1 - dx) = [0.5, 3.0, 0.0]; relu(1 + dgz) = [0.0, 1.2, 4.0]; -dgz = [1.5, -0.2, -3.0]
D_EXPECTED = {"mean": 3.5 / 3 + 5.2 / 3, "sum": 8.7, "none": [0.5, 4.2, 4.0]}
G_EXPECTED = {"mean": -1.7 / 3, "sum": -1.7, "none": [1.5, -0.2, -3.0]}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hinge_values_by_hand(reduction):
    d_expected = torch.tensor(D_EXPECTED[reduction])
    g_expected = torch.tensor(G_EXPECTED[reduction])
    assert torch.allclose(hinge_discriminator_loss(DX, DGZ, reduction), d_expected)
    assert torch.allclose(hinge_generator_loss(DGZ, reduction), g_expected)
    assert torch.allclose(HingeDiscriminatorLoss(reduction)(DX, DGZ), d_expected)
    assert torch.allclose(HingeGeneratorLoss(reduction)(DGZ), g_expected)


def test_hinge_discriminator_margins():
    """Scores beyond the margins cost nothing and give no gradient."""
    dx = torch.tensor([1.0, 3.0], requires_grad=True)
    dgz = torch.tensor([-1.0, -5.0], requires_grad=True)
    loss = hinge_discriminator_loss(dx, dgz)
    loss.backward()
    assert loss.item() == 0.0
    assert dx.grad.abs().sum() == 0 and dgz.grad.abs().sum() == 0


def test_mean_allows_batches_of_different_sizes():
    loss = hinge_discriminator_loss(torch.tensor([0.0, 0.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(1.0 + 2.0)


def test_none_needs_matching_shapes():
    with pytest.raises(ValueError, match="needs one shape"):
        hinge_discriminator_loss(torch.zeros(2), torch.zeros(3), reduction="none")


@pytest.mark.parametrize("bad", ["avg", None, "MEAN"])
def test_unknown_reduction_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum', 'none'\]"):
        HingeGeneratorLoss(bad)
    with pytest.raises(ValueError, match="reduction must be one of"):
        hinge_discriminator_loss(DX, DGZ, bad)


# By hand, least squares with a = 0, b = 1, c = 1: (dx - 1)^2 = [0.25, 9.0, 0.25];
# dgz^2 = [2.25, 0.04, 9.0]; (dgz - 1)^2 = [6.25, 0.64, 4.0]
LS_D_EXPECTED = {"mean": 0.5 * (9.5 / 3 + 11.29 / 3), "sum": 0.5 * (9.5 + 11.29), "none": [1.25, 4.52, 4.625]}
LS_G_EXPECTED = {"mean": 0.5 * 10.89 / 3, "sum": 0.5 * 10.89, "none": [3.125, 0.32, 2.0]}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_least_squares_values_by_hand_and_equal_to_torchgans(reduction):
    d, g = LeastSquaresDiscriminatorLoss(reduction), LeastSquaresGeneratorLoss(reduction)
    assert torch.allclose(d(DX, DGZ), torch.tensor(LS_D_EXPECTED[reduction]))
    assert torch.allclose(g(DGZ), torch.tensor(LS_G_EXPECTED[reduction]))
    assert torch.equal(d(DX, DGZ), tg.LeastSquaresDiscriminatorLoss(reduction)(DX, DGZ))
    assert torch.equal(g(DGZ), tg.LeastSquaresGeneratorLoss(reduction)(DGZ))


def test_least_squares_targets_are_torchgans_arguments():
    d = LeastSquaresDiscriminatorLoss(a=-1.0, b=1.0)
    g = LeastSquaresGeneratorLoss(c=0.0)
    assert d(torch.tensor([1.0]), torch.tensor([-1.0])).item() == 0.0
    assert g(torch.tensor([0.0])).item() == 0.0


def test_least_squares_unknown_reduction_is_a_value_error():
    with pytest.raises(ValueError, match="reduction must be one of"):
        LeastSquaresGeneratorLoss("avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        LeastSquaresDiscriminatorLoss("avg")


def test_modules_are_torchgan_losses():
    assert isinstance(HingeGeneratorLoss(), GeneratorLoss)
    assert isinstance(HingeDiscriminatorLoss(), DiscriminatorLoss)
    assert isinstance(LeastSquaresGeneratorLoss(), tg.LeastSquaresGeneratorLoss)
    assert isinstance(LeastSquaresDiscriminatorLoss(), tg.LeastSquaresDiscriminatorLoss)


def _trainer(tmp_path, losses):
    params = {
        "generator": {
            "name": SAGANGenerator,
            "args": {"encoding_dims": 8, "out_size": 16, "step_channels": 8},
            "optimizer": {"name": Adam, "args": {"lr": 1e-4, "betas": (0.0, 0.9)}},
        },
        "discriminator": {
            "name": SAGANDiscriminator,
            "args": {"in_size": 16, "step_channels": 8},
            "optimizer": {"name": Adam, "args": {"lr": 4e-4, "betas": (0.0, 0.9)}},
        },
    }
    return Trainer(
        params,
        losses,
        device=torch.device("cpu"),
        epochs=1,
        sample_size=4,
        checkpoints=str(tmp_path / "ckpt" / "gan"),
        recon=str(tmp_path / "images"),
        log_dir=str(tmp_path / "logs"),
    )


PAIRS = {"hinge": (HingeGeneratorLoss, HingeDiscriminatorLoss),
         "least_squares": (LeastSquaresGeneratorLoss, LeastSquaresDiscriminatorLoss),
         "wasserstein": (WassersteinGeneratorLoss, WassersteinDiscriminatorLoss)}


@pytest.mark.parametrize("pair", PAIRS)
def test_trainer_maps_its_arguments_to_the_losses(tmp_path, pair):
    gen, dis = PAIRS[pair]
    trainer = _trainer(tmp_path, [gen(), dis()])
    assert trainer.loss_arg_maps[gen.__name__] == {
        "generator": "generator",
        "discriminator": "discriminator",
        "optimizer_generator": "optimizer_generator",
        "device": "device",
        "batch_size": "batch_size",
        "labels": "labels",
    }
    assert set(trainer.loss_arg_maps[dis.__name__]) == {
        "generator",
        "discriminator",
        "optimizer_discriminator",
        "real_inputs",
        "device",
        "labels",
    }
    lgen, ldis = train_step(trainer, torch.rand(4, 3, 16, 16) * 2 - 1)
    info = trainer.loss_information
    assert (info["generator_iters"], info["discriminator_iters"]) == (1, 1)
    # Device scalars, not floats: reading them back would be a host sync on a GPU.
    assert isinstance(lgen, torch.Tensor) and lgen.shape == () and not lgen.requires_grad
    assert torch.isfinite(ldis) and (ldis >= 0 or pair == "wasserstein")  # a critic's loss may be negative


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sum_and_mean_train(tmp_path, reduction):
    trainer = _trainer(tmp_path, [HingeGeneratorLoss(reduction), HingeDiscriminatorLoss(reduction)])
    before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    train_step(trainer, torch.rand(4, 3, 16, 16) * 2 - 1)
    after = list(trainer.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("pair", PAIRS)
def test_reduction_none_in_the_trainer_is_a_clear_error(tmp_path, pair):
    gen, dis = PAIRS[pair]
    trainer = _trainer(tmp_path, [gen("none"), dis()])
    with pytest.raises(ValueError, match="use reduction='mean' or 'sum'"):
        train_step(trainer, torch.rand(4, 3, 16, 16))
    trainer = _trainer(tmp_path, [gen(), dis("none")])
    with pytest.raises(ValueError, match=f"{dis.__name__}.*use reduction='mean' or 'sum'"):
        train_step(trainer, torch.rand(4, 3, 16, 16))


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("freeze", [True, False])
def test_the_generator_step_computes_no_discriminator_weight_gradients(freeze, pair):
    torch.manual_seed(0)
    g = SAGANGenerator(8, 16, 3, 8)
    d = SAGANDiscriminator(16, 3, 8)
    optimizer = Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    loss = PAIRS[pair][0](freeze_discriminator=freeze)
    torch.manual_seed(1)
    loss.train_ops(g, d, optimizer, torch.device("cpu"), 4)
    d_grads = [p.grad for p in d.parameters()]
    if freeze:
        assert all(grad is None for grad in d_grads)  # nothing computed for D's weights
    else:
        assert all(grad is not None for grad in d_grads)  # the control: torchgan's own behaviour
    assert all(p.requires_grad for p in d.parameters())  # restored after the step
    assert all(p.grad is not None for p in g.parameters())


def test_freezing_d_leaves_the_generator_update_unchanged():
    updates = []
    for freeze in (True, False):
        torch.manual_seed(0)
        g, d = SAGANGenerator(8, 16, 3, 8), SAGANDiscriminator(16, 3, 8)
        optimizer = Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
        torch.manual_seed(1)
        HingeGeneratorLoss(freeze_discriminator=freeze).train_ops(g, d, optimizer, torch.device("cpu"), 4)
        updates.append([p.detach().clone() for p in g.parameters()])
    assert all(torch.allclose(a, b) for a, b in zip(*updates))


def test_the_discriminator_step_normalizes_each_weight_once_and_builds_no_graph_through_g():
    torch.manual_seed(0)
    g, d = SAGANGenerator(8, 16, 3, 8), SAGANDiscriminator(16, 3, 8)
    norms = [m for m in d.modules() if type(m).__name__ == "_SpectralNorm"]
    # After exactly one power iteration, u = normalize(W v) of the weights and v before it.
    originals = [m.parametrizations.weight.original for m in d.modules() if spectral_norm_of(m) is not None]
    expected = [torch.nn.functional.normalize(w.detach().flatten(1) @ sn._v, dim=0, eps=sn.eps)
                for w, sn in zip(originals, norms)]
    fakes = []
    g.register_forward_hook(lambda module, args, out: fakes.append(out))
    optimizer = Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
    loss = HingeDiscriminatorLoss().train_ops(g, d, optimizer, torch.rand(4, 3, 16, 16) * 2 - 1, torch.device("cpu"))
    # one power iteration per weight for D(real) and D(fake)
    assert norms and len(norms) == len(originals)
    for sn, u in zip(norms, expected):
        torch.testing.assert_close(sn._u, u, rtol=1e-5, atol=1e-6)
    assert len(fakes) == 1 and fakes[0].grad_fn is None
    assert all(p.grad is not None for p in d.parameters()) and all(p.grad is None for p in g.parameters())
    assert loss.shape == () and not loss.requires_grad


@pytest.mark.parametrize("pair", PAIRS)
def test_the_discriminator_step_computes_torchgans_loss_and_update(pair):
    """Same seed, same nets: the package's D step and torchgan's give one loss and one
    update (torchgan's with D's normalized weights computed once too, as in ours)."""
    from torch.nn.utils import parametrize

    results = []
    for ours in (True, False):
        torch.manual_seed(0)
        g, d = SAGANGenerator(8, 16, 3, 8), SAGANDiscriminator(16, 3, 8)
        optimizer = Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
        loss = PAIRS[pair][1]()
        torch.manual_seed(1)
        args = (g, d, optimizer, torch.rand(4, 3, 16, 16) * 2 - 1, torch.device("cpu"))
        if ours:
            value = loss.train_ops(*args)
        else:
            with parametrize.cached():
                value = DiscriminatorLoss.train_ops(loss, *args)
        results.append((float(value), [p.detach().clone() for p in d.parameters()]))
    (ours, ours_params), (theirs, their_params) = results
    assert abs(ours - theirs) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours_params, their_params))


def test_the_clipped_wasserstein_step_is_torchgans_with_its_clamp():
    """Weights clamped to the clip before the step, as torchgan's step does, then the
    same loss and update (torchgan's with D's normalized weights computed once too)."""
    from torch.nn.utils import parametrize

    results = []
    for loss in (WassersteinDiscriminatorLoss(clip=(-0.01, 0.01)), tg.WassersteinDiscriminatorLoss(clip=(-0.01, 0.01))):
        torch.manual_seed(0)
        g, d = SAGANGenerator(8, 16, 3, 8), SAGANDiscriminator(16, 3, 8)
        optimizer = Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
        torch.manual_seed(1)
        with parametrize.cached():
            value = loss.train_ops(g, d, optimizer, torch.rand(4, 3, 16, 16) * 2 - 1, torch.device("cpu"))
        results.append((float(value), [p.detach().clone() for p in d.parameters()]))
    (ours, ours_params), (theirs, their_params) = results
    assert abs(ours - theirs) < 1e-6
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(ours_params, their_params))
    assert max(float(p.abs().max()) for p in ours_params) <= 0.01 + 2e-4  # clamped, then one step of lr 1e-4
