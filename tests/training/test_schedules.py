import pytest

from deepem.training.schedules import BURDA_EPOCHS, burda_stage, learning_rate_factor


def test_burda_schedule_stages():
    assert BURDA_EPOCHS == 3280
    # stage i lasts 3^i epochs: 1, 3, 9, 27, ...
    assert [burda_stage(e) for e in (0, 1, 3, 4, 12, 13, 3279, 5000)] == [0, 1, 1, 2, 2, 3, 7, 7]
    assert learning_rate_factor("burda", 0) == 1.0
    assert learning_rate_factor("burda", 13) == pytest.approx(10 ** (-3 / 7))
    assert learning_rate_factor("constant", 999) == 1.0
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        learning_rate_factor("cosine", 0)
