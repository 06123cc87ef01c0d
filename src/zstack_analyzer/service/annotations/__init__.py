"""Organize, annotate and measure: projects, datasets, tags, key-value pairs, comments, attachments, ROIs.

Why a room of its own (DESIGN.md, "Where the next rooms go"): these records
sit on top of the images and of the accounts (``service/auth/``); the image
routes and the library know nothing of them. Every record has an owner and a
group, and every check goes through ``auth.permissions`` (``allows``), every
list through a visibility filter inside its query.
"""
