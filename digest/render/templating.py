"""The Jinja2 environment every template is rendered with (email, plain text, Markdown, archive and the web
pages), and the MJML compiler.

Templates live in `templates/`; a file of the same name in `[digest] templates_dir` overrides one. Missing
variables are errors (StrictUndefined) and HTML, MJML and XML templates autoescape, so nothing from a feed or a
model reaches a page as markup. Every failure becomes a RenderError naming the template file and line.
"""

from __future__ import annotations

import traceback
from functools import lru_cache
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from mjml import mjml2html

from digest.config import Config
from digest.errors import RenderError
from digest.render import filters
from digest.resources import templates_dir

TEMPLATES_DIR = templates_dir()
AUTOESCAPED_SUFFIXES = (".html.j2", ".mjml.j2", ".xml.j2")


def template_environment(config: Config) -> Environment:
    """The environment for this config: its `templates_dir` first, then the bundled templates."""
    override = config.digest.templates_dir
    return _environment(config.resolve(override) if override else None)


@lru_cache(maxsize=8)
def _environment(override_dir: Path | None) -> Environment:
    folders = [override_dir, TEMPLATES_DIR] if override_dir else [TEMPLATES_DIR]
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(folder) for folder in folders]),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(AUTOESCAPED_SUFFIXES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(filters.FILTERS)
    return env


def render_template(env: Environment, name: str, **context) -> str:
    """Render one template; syntax errors, unknown variables and missing templates become RenderError."""
    try:
        return env.get_template(name).render(**context)
    except TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or name}, line {exc.lineno}: {exc.message}") from None
    except TemplateNotFound as exc:
        raise RenderError(f"template {exc.name} not found (looked in {search_path(env)})") from None
    except TemplateError as exc:
        raise RenderError(f"template {failing_location(exc, name)}: {exc.message}") from None


def failing_location(exc: Exception, name: str) -> str:
    """`file, line N` of the innermost template frame in the traceback (Jinja maps frames to template lines)."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename.endswith(".j2")]
    if not frames:
        return name
    return f"{frames[-1].filename}, line {frames[-1].lineno}"


def search_path(env: Environment) -> str:
    return ", ".join(str(folder) for loader in env.loader.loaders for folder in loader.searchpath)


def compile_mjml(source: str, template_name: str) -> str:
    """MJML to email HTML (no web fonts are fetched; the templates use system fonts)."""
    try:
        return mjml2html(source, disable_comments=True, fonts={})
    except (ValueError, RuntimeError) as exc:
        raise RenderError(f"template {template_name}: invalid MJML: {exc}") from None
