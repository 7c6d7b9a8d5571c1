"""Import every module that defines tables, so metadata (and Alembic) sees them all.

A feature that adds tables adds its models module here.
"""

from ivr.ami import models as ami_models  # noqa: F401
from ivr.console import models as console_models  # noqa: F401
from ivr.db import models  # noqa: F401
from ivr.knowledge import models as knowledge_models  # noqa: F401
from ivr.messaging import models as messaging_models  # noqa: F401
from ivr.open311 import models as open311_models  # noqa: F401
from ivr.quality import models as quality_models  # noqa: F401
from ivr.webrtc import models as webrtc_models  # noqa: F401
