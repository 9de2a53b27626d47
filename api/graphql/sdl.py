"""docs/graphql.graphql: the schema's SDL, printed by strawberry (`make docs` writes it;
tests/test_graphql.py fails when it differs from the live schema)."""

from __future__ import annotations

from strawberry.printer import print_schema

from api.graphql.schema import schema
from api.reference import REFERENCE

# Beside docs/api.md.
SDL_PATH = REFERENCE.parent / "graphql.graphql"


def sdl() -> str:
    return print_schema(schema) + "\n"


def main() -> None:
    SDL_PATH.write_text(sdl(), encoding="utf-8")
    print(f"wrote {SDL_PATH}")


if __name__ == "__main__":
    main()
