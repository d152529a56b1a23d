"""gunicorn entry point: ``gunicorn api.wsgi:app``."""

from api import create_app
from app import logging as octolog
from app.config import Settings

settings = Settings.from_env()
octolog.configure(settings.log_level, json_format=settings.log_json, component="api")
app = create_app(settings)
