"""Serving a registered ensemble over HTTP on Ray Serve (`quantray serve`, docs/serving.md).

    requests.py  JSON bodies -> validated panels (one-line errors naming the field)
    history.py   the per-asset bar history `/bars` keeps, appended only when a bar is valid
    live.py      the registered version being served: loading it, following an alias
    app.py       the Serve deployments and the application builder (also KubeRay's import path)

At the registry's layer: it may import data, train, ensemble and registry. Ray Serve is imported
only by app.py, which only the recipe and Serve itself import.
"""
