"""Outpainting jobs in Redis: records, uploaded photos and a reliable queue, all without a TTL.

The queue is the classic reliable-list pattern. A worker claims a job by moving its id atomically from the model's
queue list to its processing list (BLMOVE), then keeps a short-lived lease key alive while it works. A job whose
lease is gone while it sits in the processing list belongs to a worker that died: any worker's reaper puts it back
on the queue (only if it is still there, in one script, so two reapers never requeue it twice). A worker that stops
cleanly hands its job back at once. Every write that ends a job (anchor, world, record, blob, lists) is one MULTI,
so a crash leaves either the finished job or a job that will be retried, never half of one.

Keys, per model hash so replicas running different models never take each other's work:
`outpaint:queue:{model}` and `outpaint:processing:{model}` (lists of job ids), `job:{id}` (hash),
`job-image:{id}` (the uploaded bytes, until the job ends) and `job-lease:{id}` (TTL = lease).
Only the lease has a TTL: the tile cache's volatile-lru can evict nothing else here (an evicted lease only means
a duplicate run of an idempotent job).

Why not a Redis job-queue library (weighed for issue 11, reading each one's source): arq has no heartbeat (a dead
worker's job restarts only when its in-progress key expires after the longest job timeout); rq and dramatiq run
synchronous actors (fork per job / thread actors, no asyncio) and rq has no lease; SAQ 0.26 comes closest
(heartbeats, sweeps, retries, failed and aborted states) but (1) `Worker.start` installs SIGINT/SIGTERM handlers on
the running loop, taking shutdown away from uvicorn when the worker is embedded in the API process (our default);
(2) a clean stop re-queues the job through `retry("cancelled")` after its attempt was counted, so deploys spend the
retry budget that keeps a job that kills its worker from running forever (here a hand-back does not count);
(3) its dequeue loop retries at once on a Redis error, spinning while Redis is down; (4) enqueueing by key refuses
only unfinished jobs, so a finished content-addressed job would run again; (5) a job fails only by raising, and its
error is stored as a traceback. Working around all five would leave more code than this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from infinitygan.biomes import Biomes
from infinitygan.invert import INVERSION_VERSION, QUALITY
from infinitygan.world import DEFAULT_PSI_LOCAL
from tiles.anchors import anchor_key
from tiles.errors import UnknownJob, WorldStoreUnavailable
from tiles.redis_link import RedisLink, RedisUnavailable
from tiles.worlds import WORLD_KEY_PREFIX, WorldRecord, biomes_from

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
JobStatus = Literal["queued", "running", "succeeded", "failed"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})

# Keep an existing job (same content address) unless it failed; a failed one is reset and queued again.
_SUBMIT = """
local status = redis.call('hget', KEYS[1], 'status')
if status and status ~= 'failed' then
    return 0
end
redis.call('del', KEYS[1])
redis.call('hset', KEYS[1], unpack(ARGV, 3))
redis.call('set', KEYS[2], ARGV[2])
redis.call('rpush', KEYS[3], ARGV[1])
return 1
"""

# Hand a job back to the queue if it is still in the processing list. KEYS: processing, queue, job, lease.
# ARGV: job id, 'front' | 'back', attempts increment, now.
_REQUEUE = """
if redis.call('lrem', KEYS[1], 0, ARGV[1]) == 0 then
    return 0
end
if ARGV[2] == 'front' then
    redis.call('lpush', KEYS[2], ARGV[1])
else
    redis.call('rpush', KEYS[2], ARGV[1])
end
redis.call('hset', KEYS[3], 'status', 'queued', 'progress', 0, 'updated_at', ARGV[4])
redis.call('hincrby', KEYS[3], 'attempts', ARGV[3])
redis.call('del', KEYS[4])
return 1
"""

# Start a claimed job: lease it and count the attempt, or drop it if it already ended (its photo is gone).
# KEYS: processing, job, image, lease. ARGV: job id, lease ms, now. Returns {record fields, image} or false.
_START = """
local image = redis.call('get', KEYS[3])
if not image then
    redis.call('lrem', KEYS[1], 0, ARGV[1])
    return false
end
redis.call('set', KEYS[4], '1', 'PX', ARGV[2])
redis.call('hincrby', KEYS[2], 'attempts', 1)
redis.call('hset', KEYS[2], 'status', 'running', 'progress', 0, 'updated_at', ARGV[3])
return {redis.call('hgetall', KEYS[2]), image}
"""

# The reaper's requeue: only when nobody holds the lease at this very moment.
_REAP = """
if redis.call('exists', KEYS[4]) == 1 then
    return 0
end
if redis.call('lrem', KEYS[1], 0, ARGV[1]) == 0 then
    return 0
end
redis.call('rpush', KEYS[2], ARGV[1])
redis.call('hset', KEYS[3], 'status', 'queued', 'progress', 0, 'updated_at', ARGV[2])
redis.call('hincrby', KEYS[3], 'lost_workers', 1)
return 1
"""


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def image_key(job_id: str) -> str:
    return f"job-image:{job_id}"


def lease_key(job_id: str) -> str:
    return f"job-lease:{job_id}"


def job_id_for(image: bytes, request: JobRequest, model_hash: str) -> str:
    """Content address: the same photo and parameters under the same model and inversion (its version and its
    quality's configuration) are the same job (and world)."""
    digest = hashlib.sha256(image)
    r = request
    horizon = "auto" if r.horizon is None else repr(float(r.horizon))
    reach = "unbounded" if r.reach is None else str(r.reach)
    digest.update(
        f"/{r.seed}/{float(r.psi)!r}/{r.quality}/{r.steps}/reach={reach}/horizon={horizon}/{model_hash}".encode()
    )
    if r.biomes is not None:
        digest.update(("/biomes/" + json.dumps(r.biomes.describe(), sort_keys=True)).encode())
    if r.psi_local != 1.0:  # (jobs from before psi_local were untruncated, and keep their ids)
        digest.update(f"/psi_local/{float(r.psi_local)!r}".encode())
    inversion = json.dumps(dataclasses.asdict(QUALITY[r.quality]), sort_keys=True)
    digest.update(f"/inversion/{INVERSION_VERSION}/{inversion}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class JobRequest:
    seed: int
    psi: float
    quality: str
    steps: int
    reach: int | None = None  # world pixels the photo's look reaches; None: the whole world
    horizon: float | None = None  # the photo's horizon row, a fraction of its height; None: estimated
    biomes: Biomes | None = None  # regions along x of the world beyond the photo's reach (needs a reach)
    psi_local: float = DEFAULT_PSI_LOCAL  # truncation of z_l (infinitygan.world.WorldSpec)

    def fields(self) -> dict[str, str]:
        """The request as strings for the job's Redis hash ("" for None)."""
        return {
            "seed": str(self.seed), "psi": repr(float(self.psi)), "quality": self.quality, "steps": str(self.steps),
            "reach": "" if self.reach is None else str(self.reach),
            "horizon": "" if self.horizon is None else repr(float(self.horizon)),
            "biomes": "" if self.biomes is None else json.dumps(self.biomes.describe(), sort_keys=True),
            "psi_local": repr(float(self.psi_local)),
        }  # fmt: skip

    @classmethod
    def from_fields(cls, text: Mapping[str, str]) -> JobRequest:
        reach, horizon, biomes = text.get("reach", ""), text.get("horizon", ""), text.get("biomes", "")
        return cls(
            int(text["seed"]), float(text["psi"]), text["quality"], int(text["steps"]),
            reach=int(reach) if reach else None, horizon=float(horizon) if horizon else None,
            biomes=biomes_from(json.loads(biomes)) if biomes else None,
            psi_local=float(text.get("psi_local", "1.0")),  # jobs from before psi_local were untruncated
        )  # fmt: skip


@dataclass(frozen=True)
class JobResult:
    world_id: str
    footprint: tuple[int, int, int, int]
    reconstruction_psnr: float
    seconds: float
    horizon: float = 0.5  # the photo's row placed on the world's horizon


@dataclass(frozen=True)
class JobRecord:
    id: str
    status: JobStatus
    progress: int  # 0-100
    request: JobRequest
    model_hash: str
    attempts: int
    created_at: float
    updated_at: float
    error: str | None = None
    result: JobResult | None = None
    lost_workers: int = 0  # times the job was running when its worker died (requeued by a reaper)

    @classmethod
    def from_hash(cls, fields: Mapping[bytes, bytes]) -> JobRecord:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        result = None
        if text.get("world_id"):
            result = JobResult(
                world_id=text["world_id"],
                footprint=tuple(json.loads(text["footprint"])),
                reconstruction_psnr=float(text["reconstruction_psnr"]),
                seconds=float(text["seconds"]),
                horizon=float(text.get("horizon_used", 0.5)),
            )
        return cls(
            id=text["id"],
            status=text["status"],  # type: ignore[arg-type]
            progress=int(text.get("progress", 0)),
            request=JobRequest.from_fields(text),
            model_hash=text["model_hash"],
            attempts=int(text.get("attempts", 0)),
            created_at=float(text["created_at"]),
            updated_at=float(text["updated_at"]),
            error=text.get("error") or None,
            result=result,
            lost_workers=int(text.get("lost_workers", 0)),
        )


@dataclass
class Claim:
    """A job this worker holds, and the uploaded photo it needs."""

    record: JobRecord | None
    image: bytes
    stale: bool = field(default=False)  # set when the job can no longer be run (gave up, or already done)


class JobQueue:
    def __init__(
        self,
        link: RedisLink,
        model_hash: str,
        *,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        max_lost_workers: int = 2,
    ) -> None:
        """max_lost_workers: a job whose worker died this many times while running it is failed, not run again (a
        job that kills its worker, e.g. out of memory, would otherwise kill every worker, restart after restart);
        a single death (a deploy, a node lost) is retried."""
        self.link = link
        self.model_hash = model_hash
        self.lease_ms = max(1, int(lease_s * 1000))
        self.max_attempts = max_attempts
        self.max_lost_workers = max_lost_workers
        self.queue_key = f"outpaint:queue:{model_hash}"
        self.processing_key = f"outpaint:processing:{model_hash}"
        client = link.client
        self._submit = client.register_script(_SUBMIT)
        self._start = client.register_script(_START)
        self._requeue = client.register_script(_REQUEUE)
        self._reap = client.register_script(_REAP)

    async def _run(self, command):
        try:
            return await self.link.run(command)
        except RedisUnavailable as exc:
            raise WorldStoreUnavailable(f"the job store is unreachable: {exc}") from None

    # ---- the API side ----------------------------------------------------------------------------------------------
    async def submit(self, image: bytes, request: JobRequest) -> tuple[JobRecord, bool]:
        """The job for this photo and request: an existing one, or a new queued one; True when newly queued."""
        job_id = job_id_for(image, request, self.model_hash)
        now = repr(time.time())
        fields = {
            "id": job_id, "status": "queued", "progress": 0, **request.fields(), "model_hash": self.model_hash,
            "attempts": 0, "created_at": now, "updated_at": now,
        }  # fmt: skip
        args = [job_id, image, *(str(v) for pair in fields.items() for v in pair)]
        keys = [job_key(job_id), image_key(job_id), self.queue_key]
        created = await self._run(lambda r: self._submit(keys=keys, args=args, client=r))
        return await self.get(job_id), bool(created)

    async def get(self, job_id: str) -> JobRecord:
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise UnknownJob(f"unknown job {job_id!r}")
        fields = await self._run(lambda r: r.hgetall(job_key(job_id)))
        if not fields:
            raise UnknownJob(f"unknown job {job_id!r}")
        return JobRecord.from_hash(fields)

    # ---- the worker side -------------------------------------------------------------------------------------------
    async def claim(self, wait_s: float) -> Claim | None:
        """The next job, moved to the processing list and leased to the caller; None when none came within wait_s."""
        job_id = await self.link.run(lambda r: r.blmove(self.queue_key, self.processing_key, wait_s, "LEFT", "RIGHT"))
        if job_id is None:
            return None
        job_id = job_id.decode()
        keys = [self.processing_key, job_key(job_id), image_key(job_id), lease_key(job_id)]
        args = [job_id, self.lease_ms, repr(time.time())]
        started = await self.link.run(lambda r: self._start(keys=keys, args=args, client=r))
        if not started:  # it ended while a reaper thought its worker lost: nothing left to do
            return Claim(None, b"", stale=True)
        flat, image = started
        record = JobRecord.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        claim = Claim(record, image)
        if record.lost_workers >= self.max_lost_workers:
            # A job that was running when its worker died, twice: likely what killed it (out of memory). Running
            # it again would kill the next worker too, and a persisted queue would do so after every restart.
            claim.stale = True
            await self.fail(
                job_id,
                f"not retried: its worker died {record.lost_workers} times while running it (out of memory?)",
            )
        elif record.attempts > self.max_attempts:
            claim.stale = True
            await self.fail(job_id, f"gave up after {self.max_attempts} attempts: the worker running it was lost")
        return claim

    async def heartbeat(self, job_id: str, progress: int | None = None) -> None:
        async def beat(r):
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(lease_key(job_id), b"1", px=self.lease_ms)
                if progress is not None:
                    pipe.hset(job_key(job_id), mapping={"progress": progress, "updated_at": repr(time.time())})
                return await pipe.execute()

        await self.link.run(beat)

    async def complete(self, job_id: str, world: WorldRecord, anchor_bytes: bytes, result: JobResult) -> None:
        fields = {
            "status": "succeeded", "progress": 100, "updated_at": repr(time.time()), "error": "",
            "world_id": result.world_id, "footprint": json.dumps(list(result.footprint)),
            "reconstruction_psnr": repr(result.reconstruction_psnr), "seconds": repr(result.seconds),
            "horizon_used": repr(result.horizon),
        }  # fmt: skip

        async def finish(r):
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(anchor_key(world.anchor), anchor_bytes)
                pipe.set(WORLD_KEY_PREFIX + world.id, world.to_json())
                pipe.hset(job_key(job_id), mapping=fields)
                pipe.delete(image_key(job_id), lease_key(job_id))
                pipe.lrem(self.processing_key, 0, job_id)
                return await pipe.execute()

        await self.link.run(finish)

    async def fail(self, job_id: str, error: str) -> None:
        fields = {"status": "failed", "error": error, "updated_at": repr(time.time())}

        async def end(r):
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(job_key(job_id), mapping=fields)
                pipe.delete(image_key(job_id), lease_key(job_id))
                pipe.lrem(self.processing_key, 0, job_id)
                return await pipe.execute()

        await self.link.run(end)

    async def release(self, job_id: str) -> None:
        """Forget a claim without touching the record (the job already ended elsewhere)."""
        await self.link.run(lambda r: r.lrem(self.processing_key, 0, job_id))

    async def hand_back(self, job_id: str) -> None:
        """A clean stop: the job goes back to the front of the queue, and this attempt does not count."""
        keys = [self.processing_key, self.queue_key, job_key(job_id), lease_key(job_id)]
        await self.link.run(lambda r: self._requeue(keys=keys, args=[job_id, "front", -1, repr(time.time())], client=r))

    async def unleased(self) -> set[str]:
        """Ids in the processing list whose lease is gone right now."""
        ids = [i.decode() for i in await self.link.run(lambda r: r.lrange(self.processing_key, 0, -1))]
        if not ids:
            return set()
        alive = await self.link.run(lambda r: r.mget([lease_key(i) for i in ids]))
        return {i for i, lease in zip(ids, alive, strict=True) if lease is None}

    async def reap(self, job_id: str) -> bool:
        """Requeue a job whose worker is gone; False if it is leased again or no longer processing."""
        keys = [self.processing_key, self.queue_key, job_key(job_id), lease_key(job_id)]
        return bool(await self.link.run(lambda r: self._reap(keys=keys, args=[job_id, repr(time.time())], client=r)))
