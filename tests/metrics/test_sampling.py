"""Drawing samples a batch at a time."""

import torch

from torchgan_sagan import SAGANGenerator
from torchgan_sagan.metrics.sampling import GeneratedBatches, generate


def test_batches_are_generates_images_one_at_a_time_with_the_first_kept():
    g = SAGANGenerator(8, 16, 1, 8).train()
    batches = GeneratedBatches(g, 10, seed=3, batch_size=4, keep=6)
    assert len(batches) == 3 and batches.num_images == 10
    drawn = list(batches)
    assert [len(b) for b in drawn] == [4, 4, 2] and g.training
    whole = generate(g, 10, seed=3)
    assert torch.allclose(torch.cat(drawn), whole, atol=1e-6)
    assert torch.equal(batches.kept, torch.cat(drawn)[:6])
    assert torch.allclose(torch.cat(list(batches)), whole, atol=1e-6)  # each pass draws the same images


def test_a_pass_holds_one_batch_of_images_not_all(watch_outputs):
    g = SAGANGenerator(8, 16, 1, 8)
    outputs = watch_outputs(g)
    for batch in GeneratedBatches(g, 40, batch_size=2):
        batch.mean()  # used, then dropped, as features are taken
    assert outputs["calls"] == 20 and outputs["most"] <= 2
