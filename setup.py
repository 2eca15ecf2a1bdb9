"""Maps the top-level folders onto the ``pgdurable.*`` import names.

The repository keeps ``translators/``, ``worker/`` and ``schema/`` beside
``pgdurable/`` (the mandated layout), but they install only as sub-packages of
``pgdurable``; nothing named ``worker`` or ``schema`` reaches site-packages.
Sub-packages are discovered so a new folder with an ``__init__.py`` ships in
wheels as well as in editable installs.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "pgdurable": "pgdurable",
    "pgdurable.translators": "translators",
    "pgdurable.worker": "worker",
    "pgdurable.schema": "schema",
}

packages = []
for package, folder in FOLDERS.items():
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(
    packages=packages,
    package_dir=FOLDERS,
    package_data={
        "pgdurable.schema": ["*.sql", "migrations/*.sql"],
        "pgdurable.ui": ["templates/*.html", "static/*"],
    },
    include_package_data=False,
)
