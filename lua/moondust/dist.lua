-- Data-parallel training over MPI (Debian's OpenMPI), as ADM does it.
--
--   local dist = md.dist
--   dist.init()                                  -- a world of one without mpirun
--   dist.broadcast_parameters(model)             -- everyone starts from rank 0's weights
--   ... forward and backward on this rank's shard of the global batch ...
--   dist.average_gradients(model)                -- one allreduce over all gradients
--   opt:step()
--
-- Run with `mpirun -np 2 lua5.4 train.lua` (see the README for several hosts).
-- Ranks are numbered from 0, as in MPI. Collectives take a tensor or a list
-- of tensors; a list travels as one flat buffer, so averaging a model's
-- gradients is one MPI call.
local md = require "moondust"
local core = md.core

local dist = {}

local rank, size = 0, 1

-- true when this build has MPI (libopenmpi-dev was installed when it was built)
function dist.available() return core.dist_available() end

-- Starts MPI when mpirun launched this process; returns rank, size.
function dist.init()
  rank, size = core.dist_init()
  return rank, size
end

-- This process's rank (0-based), the number of ranks, whether this is rank 0; a barrier.
function dist.rank() return rank end
function dist.size() return size end
function dist.is_main() return rank == 0 end
function dist.barrier() core.dist_barrier() end

-- In place: every rank ends with the sum (or the mean) over ranks.
function dist.allreduce_(x, op)
  md.options.choice("dist.allreduce_", "op", op, { "sum", "mean" })
  return core.dist_allreduce_(x, op or "sum")
end

-- In place: root's values (rank 0 unless given) on every rank.
function dist.broadcast_(x, root)
  md.options.integer("dist.broadcast_", "root", root, 0, size - 1)
  return core.dist_broadcast_(x, root or 0)
end

-- Every rank's tensor concatenated along the first dimension, rank order.
function dist.all_gather(x) return core.dist_all_gather(x) end

-- The tensors of a model (or anything with :parameters()) as a list.
local function params_of(model)
  local list = {}
  for _, p in ipairs(model:parameters()) do list[#list + 1] = p end
  return list
end

function dist.broadcast_parameters(model)
  if size > 1 then md.no_grad(core.dist_broadcast_, params_of(model), 0) end
end

-- The gradients of the model as a list (parameters without one left out).
local function grads_of(model)
  local grads = {}
  for _, p in ipairs(params_of(model)) do
    if p.grad then grads[#grads + 1] = p.grad end
  end
  return grads
end

-- Sums the gradients over ranks, for losses each rank has already weighted
-- by its share of the global batch (the trainer's way with uneven shards).
function dist.sum_gradients(model)
  if size > 1 then core.dist_allreduce_(grads_of(model), "sum") end
end

-- Averages the gradients over ranks (parameters without one count as zero
-- everywhere: each rank must have computed the same set).
function dist.average_gradients(model)
  if size > 1 then core.dist_allreduce_(grads_of(model), "mean") end
end

-- The rows of a global batch of n that this rank takes: first, count
-- (contiguous shards; the first n % size ranks take one more).
function dist.shard(n)
  local base, extra = n // size, n % size
  local first = rank * base + math.min(rank, extra) + 1
  return first, base + (rank < extra and 1 or 0)
end

-- Runs fn(...); an error on any rank prints "rank R: message" and ends every
-- rank (MPI_Abort), so a failure never leaves the others waiting forever.
function dist.run(fn, ...)
  local res = table.pack(xpcall(fn, debug.traceback, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  io.stderr:write(("rank %d: %s\n"):format(rank, tostring(res[2])))
  io.stderr:flush()
  if size > 1 then core.dist_abort(1) end
  error(res[2], 0)
end

-- Ends MPI (under mpirun, once, at the end of the program).
function dist.finalize() core.dist_finalize() end

return dist
