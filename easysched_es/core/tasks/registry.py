"""The task types the fold knows: one registration line per type.

Adding a type: write `core/tasks/NAME.py` with a `TaskType` subclass (see `base.py` for the
hooks), add its definition struct to `definitions.TaskDef`, and add one line below.
"""

from easysched_es.core.tasks import conditions, dependent, shell, sub_workflow, switch
from easysched_es.core.tasks.base import register

register(shell.Shell())
register(dependent.Dependent())
register(conditions.Conditions())
register(switch.Switch())
register(sub_workflow.SubWorkflow())
