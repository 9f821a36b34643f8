-- Checking options tables and numbers: nothing is silently ignored.
--
--   local options = require "moondust.options"
--   options.check("md.sample", opts, { n = "number", class = true, guidance = "number" })
--   options.integer("md.sample", "n", opts.n, 1)           -- n >= 1, an integer
--   options.number("AdamW", "lr", opts.lr, 0, 1e3)         -- 0 <= lr <= 1e3, finite
--
-- An unknown name is an error that names the nearest known one; a value of
-- the wrong type names the type expected. Errors are raised at the caller's
-- caller (level 3), so the message points at the user's line, not ours.
local options = {}

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

-- The known name nearest to `name`, or nil when none is plausibly meant.
function options.nearest(name, known)
  local best, best_d
  local names = {}
  for k in pairs(known) do names[#names + 1] = k end
  table.sort(names) -- ties resolve the same way every run
  for _, k in ipairs(names) do
    local d = distance(name, k)
    if not best_d or d < best_d then best, best_d = k, d end
  end
  if best and best_d <= math.max(2, #name // 3) then return best end
  return nil
end

local function sorted_names(known)
  local names = {}
  for k in pairs(known) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

-- The "did you mean" sentence for an unknown name (shared with the CLI).
function options.unknown_message(where, name, known, prefix)
  prefix = prefix or ""
  local near = options.nearest(name, known)
  if near then
    return ("%s: unknown option '%s%s' (did you mean '%s%s'?)"):format(where, prefix, name, prefix, near)
  end
  return ("%s: unknown option '%s%s' (known: %s)"):format(where, prefix, name, sorted_names(known))
end

-- Checks every key of opts against `known` (name -> type name, or true for
-- any type). opts may be nil. Returns opts (or an empty table).
function options.check(where, opts, known, level)
  level = (level or 1) + 2
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: expected an options table, got %s"):format(where, type(opts)), level)
  end
  for k, v in pairs(opts) do
    if type(k) ~= "string" then
      error(("%s: options must be named (got key %s)"):format(where, tostring(k)), level)
    end
    local want = known[k]
    if want == nil then error(options.unknown_message(where, k, known), level) end
    if want ~= true and type(v) ~= want then
      error(("%s: option '%s' must be a %s, got %s"):format(where, k, want, type(v)), level)
    end
  end
  return opts
end

-- A finite number in [lo, hi] (either bound may be nil). nil passes through.
function options.number(where, name, v, lo, hi, level)
  level = (level or 1) + 2
  if v == nil then return nil end
  if type(v) ~= "number" then
    error(("%s: %s must be a number, got %s"):format(where, name, type(v) == "string" and ("'" .. v .. "'") or type(v)), level)
  end
  if v ~= v or v == math.huge or v == -math.huge then
    error(("%s: %s must be finite, got %s"):format(where, name, tostring(v)), level)
  end
  if (lo and v < lo) or (hi and v > hi) then
    local range = lo and hi and ("%s to %s"):format(lo, hi) or lo and ("at least %s"):format(lo)
      or ("at most %s"):format(hi)
    error(("%s: %s must be %s, got %s"):format(where, name, range, tostring(v)), level)
  end
  return v
end

-- An integer in [lo, hi]. nil passes through.
function options.integer(where, name, v, lo, hi, level)
  options.number(where, name, v, lo, hi, (level or 1) + 1)
  if v ~= nil and math.type(v) ~= "integer" and v ~= math.floor(v) then
    error(("%s: %s must be a whole number, got %s"):format(where, name, tostring(v)), (level or 1) + 2)
  end
  return v and math.tointeger(v) or nil
end

-- A required whole number >= lo (default 1): a size, a count, a dimension.
function options.size(where, name, v, lo, hi, level)
  lo = lo or 1
  if v == nil then error(("%s: %s is required (a whole number >= %d)"):format(where, name, lo), (level or 1) + 2) end
  return options.integer(where, name, v, lo, hi, (level or 1) + 1)
end

-- One of a list of strings. nil passes through.
function options.choice(where, name, v, choices, level)
  level = (level or 1) + 2
  if v == nil then return nil end
  local set = {}
  for _, c in ipairs(choices) do set[c] = true end
  if not set[v] then
    local near = type(v) == "string" and options.nearest(v, set)
    error(("%s: %s must be one of %s, got %s%s"):format(where, name, table.concat(choices, ", "),
      type(v) == "string" and ("'" .. v .. "'") or tostring(v), near and (" (did you mean '" .. near .. "'?)") or ""),
      level)
  end
  return v
end

return options
