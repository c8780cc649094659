"""Logging in through the real login form, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_form_lets_an_active_user_in_and_keeps_a_wrong_password_out(page: Any, shot: Any):
    User.objects.create_user("ada", password="correct-horse-1")
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator("text=Wrong user name or password").is_visible()
    shot("wrong-password")
    page.fill("input[name=password]", "correct-horse-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    assert page.locator("header.top").inner_text().count("ada") == 1
    shot("overview-empty")
