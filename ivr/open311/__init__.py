"""Open311 GeoReport v2: civic service requests from calls, SMS/MMS and the API.

Importing the package registers the IVR's ``service_request_status`` lookup handler. The
engine has no plug-in list, so this relies on imports: ``ivr.db.all_models`` imports this
package whenever migrations run (``dasan up`` runs them at start, whatever ``--only`` says),
and the web setup and the ``open311`` service import it too.
"""

from __future__ import annotations


def _register_ivr_lookup() -> None:
    try:
        from ivr.open311.ivr_lookup import register
    except ImportError:  # an install without the IVR engine: the API still works
        return
    register()


_register_ivr_lookup()
