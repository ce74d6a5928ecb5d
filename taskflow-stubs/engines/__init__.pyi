from taskflow.engines.helpers import (
    flow_from_detail as flow_from_detail,
)
from taskflow.engines.helpers import (
    load as load,
)
from taskflow.engines.helpers import (
    load_from_detail as load_from_detail,
)
from taskflow.engines.helpers import (
    load_from_factory as load_from_factory,
)
from taskflow.engines.helpers import (
    run as run,
)
from taskflow.engines.helpers import (
    save_factory_details as save_factory_details,
)
