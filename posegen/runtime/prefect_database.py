"""The Prefect server's database, made ready once before several API workers start on it:
migrated and its block types registered (each worker would otherwise do both as it starts,
all at once, and the losers of the race on a fresh database exit with a unique violation)."""

from __future__ import annotations

import asyncio


async def prepare() -> None:
    """What a Prefect server's startup does first (prefect.server.api.server's lifespan)."""
    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    db = provide_database_interface()
    await db.create_db()
    session = await db.session()
    async with session:
        await run_block_auto_registration(session=session)
        await session.commit()


if __name__ == "__main__":
    asyncio.run(prepare())
