"""The validation split carved from the training clips by actor."""

import numpy as np
import pytest

from data_pipelines import validation
from data_pipelines.records import ClipRecord


def _records(actors=8, classes=3, takes=2):
    return [ClipRecord(f"C{c}/C{c}_{a}_{t}.mp4", c, f"/d/C{c}/C{c}_{a}_{t}.mp4")
            for c in range(classes) for a in range(1, actors + 1) for t in range(1, takes + 1)]


def test_actors_are_read_from_arid_names_and_other_names_stand_alone():
    assert validation.actor_of("Drink/Drink_12_3.avi") == "12"
    assert validation.actor_of("Pour/Pour_2_10.mp4") == "2"
    assert validation.actor_of("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi") == \
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"


def test_the_carve_keeps_each_actor_on_one_side_and_is_deterministic():
    records = _records()
    train, val = validation.split_off_validation(records, 0.25, seed=0)
    train_actors = {validation.actor_of(r.clip_id) for r in train}
    val_actors = {validation.actor_of(r.clip_id) for r in val}
    assert len(val_actors) == 2 and not train_actors & val_actors  # round(0.25 * 8) actors held out
    assert len(train) + len(val) == len(records) and len(val) == 2 * 3 * 2
    again, val_again = validation.split_off_validation(records, 0.25, seed=0)
    assert again == train and val_again == val
    draws = {frozenset(validation.actor_of(r.clip_id) for r in validation.split_off_validation(records, 0.25, s)[1])
             for s in range(6)}
    assert len(draws) > 1  # the seed draws the actors


def test_a_source_is_carved_into_subset_sources_with_their_labels():
    records = _records()

    class Source:
        def __len__(self):
            return len(records)

        def __getitem__(self, i):
            return {"clip_id": records[i].clip_id, "label": records[i].label}

        def labels(self):
            return np.asarray([r.label for r in records])

    train, val = validation.split_off_validation(Source(), 0.25, seed=0)
    listed_train, listed_val = validation.split_off_validation(records, 0.25, seed=0)
    assert [train[i]["clip_id"] for i in range(len(train))] == [r.clip_id for r in listed_train]
    assert val.labels().tolist() == [r.label for r in listed_val]


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_a_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="validation fraction"):
        validation.carve_by_actor(["A/A_1_1.mp4", "A/A_2_1.mp4"], fraction, 0)


def test_one_actor_cannot_be_split():
    with pytest.raises(ValueError, match="at least 2 actors"):
        validation.carve_by_actor(["A/A_1_1.mp4", "A/A_1_2.mp4"], 0.5, 0)
