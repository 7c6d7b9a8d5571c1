"""Masking personal data (resident registration, phone, card and account numbers, e-mail)."""
