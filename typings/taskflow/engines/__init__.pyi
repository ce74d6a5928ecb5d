from taskflow.engines.helpers import (
    flow_from_detail as flow_from_detail,
    load as load,
    load_from_detail as load_from_detail,
    load_from_factory as load_from_factory,
    run as run,
    save_factory_details as save_factory_details,
)
