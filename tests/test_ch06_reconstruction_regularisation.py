"""Chapter 6's check of the trainer's objective speaks to the reader in words: its verdict
(printed in the chapter) names what was compared, never the package's function names,
and holds nothing the book's output test would refuse."""

from test_book import reader_visible_problems  # tests/ is on sys.path
from test_objective_link import derived_forms

from vaebook.chapters.ch06_reconstruction_regularisation import check_training_objective


def test_the_trainer_check_verdict_is_in_words():
    check = check_training_objective(**derived_forms(), n_points=50)
    verdict = check.verdict()
    lines = verdict.splitlines()
    assert len(lines) == len(check.errors) == 13  # one line per comparison
    for internal in ("elbo_terms", "make_train_step", "kl_to_standard_normal", "_"):
        assert internal not in verdict, internal
    assert not reader_visible_problems(verdict), reader_visible_problems(verdict)
    for decoder in ("Bernoulli", "Gaussian"):
        assert sum(decoder in line for line in lines) >= 5  # both decoders, every stage
