"""Accounts: invite-only sign-up (one-time set-password links) and login lockout against brute force."""
