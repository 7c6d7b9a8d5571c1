"""The messaging sidecar: SMS/MMS, web chat and SNS legs written into the counselling record.

Every inbound message threads onto its citizen (phone number, chat identity or SNS account)
and onto their open contact where one exists, so voice, SMS and chat of one inquiry are one
record. See docs/messaging.md.
"""
