"""Adapters that plug codevision into other training frameworks without patching them.

Each adapter lives in its own subpackage and imports its framework only in the modules that
subclass the framework's classes, so the core package never depends on one.
"""
