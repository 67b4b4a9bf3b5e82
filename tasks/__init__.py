"""Task folders: `tasks/<task>/task.toml` is the declarative spec of one prediction task (validated by
`features/task_spec.py`); Python the task needs lives beside it and is registered by the folder's `__init__.py`
as `TASK_CODE`. `features/tasks.py` discovers the folders; nothing outside a folder names its task."""
