"""The local web studio (`postergen serve`): a FastAPI app over run folders and its one page.

Import `postergen.web.app` for `create_app` and `serve`; this package itself imports nothing,
so the CLI stays fast when the web extras are not installed.
"""
