"""Auto Risk behavior-sequence encoder: featurization, model, pretraining, batch embedding."""

import os

# Waiting OpenMP threads sleep instead of spinning: on a shared machine spinning threads steal
# the cores other processes need (only effective when set before torch is first imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
