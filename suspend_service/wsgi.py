"""WSGI entry point (Apache mod_wsgi, mod_wsgi-express)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suspend_service.settings")
application = get_wsgi_application()
