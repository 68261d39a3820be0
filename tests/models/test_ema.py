import copy

import pytest
import torch
import torch.nn as nn

from torchgan_sagan import SAGANDiscriminator, SAGANGenerator
from torchgan_sagan.models.ema import WeightEMA, ema_update_, standing_statistics_, warmed_up_decay
from torchgan_sagan.layers import apply_spectral_norm, spectral_norm_of


def small_net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_math_with_start():
    net = small_net()
    ema = WeightEMA(net, decay=0.9, start=2)
    history = []
    for step in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        history.append(net[0].weight.detach().clone())
        ema.update(net)
    # Steps 1 and 2 copy; steps 3, 4 and 5 average with the warmed-up decays
    # min(0.9, (1 + n) / (10 + n)) for n = 0, 1, 2: 1/10, 2/11, 3/12.
    expected = history[1]
    for w, decay in zip(history[2:], [1 / 10, 2 / 11, 3 / 12]):
        expected = decay * expected + (1 - decay) * w
    assert torch.allclose(ema.model[0].weight, expected)
    assert int(ema.steps) == 5


def test_warmed_up_decay():
    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.999, 90) == pytest.approx(0.91)
    assert warmed_up_decay(0.999, 10**6) == 0.999


def test_the_initial_weights_fade_from_the_average():
    # Without the warm-up, 0.999 ** 1200 = 30% of the average would still be the
    # initial weights after 1200 steps.
    net = nn.Linear(3, 3)
    ema = WeightEMA(net, decay=0.999)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(1200):
        ema.update(net)
    assert torch.allclose(ema.model.weight, torch.ones(3, 3), atol=1e-6)


def test_batchnorm_statistics_are_not_averaged_and_go_stale():
    net = small_net()
    ema = WeightEMA(net, decay=0.5)
    saved = ema.model[1].running_mean.clone()
    net.train()
    net(torch.randn(16, 3) * 3 + 5)
    assert ema.statistics_stale
    ema.update(net)
    assert torch.equal(ema.model[1].running_mean, saved) and ema.statistics_stale


def test_standing_statistics_are_the_plain_average_over_batches():
    net = small_net()
    batches = [torch.randn(8, 3) * 2 + 1 for _ in range(3)]
    feed = iter(batches)
    standing_statistics_(net, lambda: net(next(feed)), 3)
    hidden = [net[0](b).detach() for b in batches]
    assert torch.allclose(net[1].running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0), atol=1e-6)
    assert torch.allclose(net[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0), atol=1e-5)
    assert net[1].momentum == 0.1 and net.training  # restored


def test_standing_statistics_leave_spectral_norm_alone():
    net = apply_spectral_norm(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    u = net[0].parametrizations.weight[0]._u.clone()
    standing_statistics_(net, lambda: net(torch.randn(8, 3)), 2)
    assert torch.equal(net[0].parametrizations.weight[0]._u, u)
    assert net[0].parametrizations.weight[0].training  # mode restored


def test_ema_update_helper():
    a, b = [torch.zeros(3)], [torch.ones(3)]
    ema_update_(a, b, 0.75)
    assert torch.allclose(a[0], torch.full((3,), 0.25))


def test_copy_holds_buffers_only_and_follows_to():
    net = small_net()
    ema = WeightEMA(net)
    assert list(ema.parameters()) == []
    assert {n for n, _ in ema.model.named_buffers()} >= {n for n, _ in net.named_parameters()}
    ema.to(torch.float64)
    assert ema.model[0].weight.dtype == torch.float64


def test_spectral_norm_of_the_average_is_estimated_for_the_average():
    net = apply_spectral_norm(nn.Sequential(nn.Linear(6, 6)))
    ema = WeightEMA(net, decay=0.5)
    with torch.no_grad():
        net[0].parametrizations.weight.original.mul_(3.0).add_(torch.randn(6, 6))
    for _ in range(30):
        ema.update(net)
    ema.model.eval()
    sigma = torch.linalg.matrix_norm(ema.model[0].weight, ord=2)
    assert abs(float(sigma) - 1.0) < 0.05
    assert spectral_norm_of(ema.model[0]) is not None


def test_bad_decay_or_start():
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\)"):
        WeightEMA(small_net(), decay=1.0)
    with pytest.raises(ValueError, match="start must be a non-negative"):
        WeightEMA(small_net(), start=-1)


def make_generator(**kwargs):
    return SAGANGenerator(16, out_size=16, out_channels=1, step_channels=8, attn_resolutions=(8,),
                          ema_decay=0.5, **kwargs)


def test_generator_average_follows_its_own_optimizer_steps_only():
    g = make_generator()
    d = SAGANDiscriminator(16, 1, 8, attn_resolutions=(8,))
    opt_g = torch.optim.SGD(g.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(d.parameters(), lr=0.1)
    assert all(not n.startswith("ema.") for n, _ in g.named_parameters())
    z = torch.randn(4, 16)
    d(g(z).detach()).mean().backward()
    opt_d.step()
    assert int(g.ema.steps) == 0
    before = g.ema.model[0].parametrizations.weight.original.clone()
    d(g(z)).mean().backward()
    opt_g.step()
    assert int(g.ema.steps) == 1
    live = g.model[0].parametrizations.weight.original
    # The first averaging update has the warmed-up decay min(0.5, 1/10).
    assert torch.allclose(g.ema.model[0].parametrizations.weight.original, 0.1 * before + 0.9 * live)


def test_generator_runs_the_average_in_eval_mode():
    g = make_generator()
    opt = torch.optim.SGD(g.parameters(), lr=1.0)
    z = torch.randn(4, 16)
    g(z).pow(2).mean().backward()
    opt.step()
    g.eval()
    with torch.no_grad():
        averaged = g(z)
        trained = g.model(g._noise_as_map(z))
    assert not torch.allclose(averaged, trained)
    assert g.layers is g.ema.model
    assert g.train().layers is g.model


def test_average_is_saved_and_loaded_with_the_state_dict():
    g = make_generator()
    opt = torch.optim.SGD(g.parameters(), lr=1.0)
    g(torch.randn(4, 16)).pow(2).mean().backward()
    opt.step()
    state = g.state_dict()
    assert "ema.steps" in state and int(state["ema.steps"]) == 1
    # Saving recomputed the average's statistics: the checkpoint's fit its weights.
    assert int(state["ema.statistics_steps"]) == 1
    fresh = make_generator()
    fresh.load_state_dict(state)
    for (name, a), (_, b) in zip(g.ema.named_buffers(), fresh.ema.named_buffers()):
        assert torch.equal(a, b), name
    assert not fresh.ema.statistics_stale  # drawing from it recomputes nothing


def test_the_average_gets_standing_statistics_before_it_draws():
    g = make_generator()
    opt = torch.optim.SGD(g.parameters(), lr=1.0)
    g(torch.randn(4, 16)).pow(2).mean().backward()
    opt.step()
    assert g.ema.statistics_stale
    rng_state = torch.get_rng_state()
    u = g.ema.model[0].parametrizations.weight[0]._u.clone()
    g.eval()
    with torch.no_grad():
        g(torch.randn(2, 16, generator=torch.Generator().manual_seed(1)))
    assert not g.ema.statistics_stale
    assert torch.equal(torch.get_rng_state(), rng_state)  # noise of its own
    assert torch.equal(g.ema.model[0].parametrizations.weight[0]._u, u)
    # The same statistics every time (and so on every process of a DDP run).
    means = [m.running_mean.clone() for m in g.ema.model.modules() if isinstance(m, nn.BatchNorm2d)]
    g.ema._host_statistics_steps = -1
    g.refresh_average_statistics()
    again = [m.running_mean for m in g.ema.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(means, again))


def test_conditional_average_gets_statistics_for_its_classes():
    g = SAGANGenerator(16, out_size=16, out_channels=1, step_channels=8, attn_resolutions=(8,), num_classes=3,
                       ema_decay=0.5)
    g.ema.update(g.model)
    g.eval()
    with torch.no_grad():
        g(torch.randn(2, 16), torch.tensor([0, 2]))
    assert not g.ema.statistics_stale


def test_copies_follow_their_own_optimizer():
    g = copy.deepcopy(make_generator())
    opt = torch.optim.SGD(g.parameters(), lr=1.0)
    g(torch.randn(4, 16)).pow(2).mean().backward()
    opt.step()
    assert int(g.ema.steps) == 1


def test_weight_initializer_restarts_the_average():
    g = make_generator()
    g._weight_initializer()
    assert int(g.ema.steps) == 0
    assert torch.equal(g.ema.model[0].parametrizations.weight.original,
                       g.model[0].parametrizations.weight.original)


def test_use_ema_switches_eval_mode_back_to_the_trained_weights():
    g = make_generator().eval()
    assert g.layers is g.ema.model
    g.use_ema = False
    assert g.layers is g.model


class _NoHostRead(torch.Tensor):
    """A tensor that refuses to be read back to the host (as a sync on a GPU would)."""

    def __int__(self):
        raise AssertionError("the step count was read back from the device")

    def item(self):
        raise AssertionError("the step count was read back from the device")


def test_updates_keep_the_step_count_on_the_host():
    net = small_net()
    ema = WeightEMA(net, decay=0.9, start=1)
    ema.update(net)
    ema.steps = torch.Tensor._make_subclass(_NoHostRead, ema.steps)
    for _ in range(3):
        ema.update(net)  # no read of ema.steps
    assert torch.Tensor.__int__(ema.steps.as_subclass(torch.Tensor)) == 4


def test_a_loaded_step_count_is_continued():
    net = small_net()
    ema = WeightEMA(net, decay=0.9, start=10)
    for _ in range(6):
        ema.update(net)
    other = WeightEMA(small_net(), decay=0.9, start=10)
    other.load_state_dict(ema.state_dict())
    other.update(net)
    assert int(other.steps) == 7
    other.reset_steps()
    other.update(net)
    assert int(other.steps) == 1


def test_update_matches_the_tensor_by_tensor_formula():
    average = [torch.randn(3, 4), torch.randn(5)]
    current = [torch.randn(3, 4), torch.randn(5)]
    expected = [0.8 * a + 0.2 * c for a, c in zip(average, current)]
    ema_update_(average, current, 0.8)
    assert all(torch.allclose(a, e) for a, e in zip(average, expected))


@pytest.mark.slow
def test_a_short_training_run_gives_an_average_that_draws_what_the_trained_weights_draw(tmp_path):
    """150 steps on the embedded digits from ema_start=0 at decay 0.999: without the
    warm-up the initial weights hold 86% of the average, and averaged BatchNorm
    statistics shrink its samples towards one grey image (a fifth of the spread)."""
    from torchgan_sagan import embedded_digits, get_config, make_trainer, train_step

    cfg = get_config("sagan_32", image_size=16, image_channels=1, step_channels=8, batch_size=32,
                     ema_decay=0.999, ema_start=0, g_attn_resolutions=(8,), d_attn_resolutions=(8,))
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    images = embedded_digits(16).tensors[0]
    order = torch.Generator().manual_seed(0)
    for _ in range(150):
        train_step(trainer, images[torch.randint(0, len(images), (32,), generator=order)])

    generator = trainer.generator.eval()
    z = torch.randn(64, cfg.encoding_dims, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        generator.use_ema = False
        trained = generator(z)
        generator.use_ema = True
        average = generator(z)
        alone = generator(z[:1])
    spread_trained, spread_average = trained.std(0).mean(), average.std(0).mean()
    assert spread_trained > 0.1, "the trained weights draw one image: the run did not train"
    assert spread_average >= 0.8 * spread_trained, (spread_average, spread_trained)
    torch.testing.assert_close(alone, average[:1])
