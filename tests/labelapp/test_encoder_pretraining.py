"""The ``auto`` setting's background pretraining: one request per dataset version at a time."""

import os
import time

from labelapp.services.encoder_pretraining import (
    CLAIM_MARGIN_S,
    EncoderPlace,
    encoder_pretrain_request,
)


def test_one_request_at_a_time_and_a_dead_workers_claim_is_taken_over(tmp_path, celery_queue):
    place = EncoderPlace(tmp_path, "abc123")
    snapshot = tmp_path / "snapshot"
    assert encoder_pretrain_request(place, snapshot, minutes=1.0)  # claims and sends the task
    assert place.claim.exists()
    assert not encoder_pretrain_request(place, snapshot, minutes=1.0)  # someone is at it
    old = time.time() - (60 + CLAIM_MARGIN_S + 5)
    os.utime(place.claim, (old, old))  # its worker died long ago
    assert encoder_pretrain_request(place, snapshot, minutes=1.0)
    place.claim.unlink()
    place.encoder.write_bytes(b"x")  # the encoder is there: nothing to ask
    assert not encoder_pretrain_request(place, snapshot, minutes=1.0)
