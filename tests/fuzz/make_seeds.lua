-- Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/*): small
-- valid files of each format, from which libFuzzer mutates.
--   scripts/md-lua tests/fuzz/make_seeds.lua
local md = require "moondust"
local dir = "tests/fuzz/corpus/"
local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end

md.manual_seed(1)
md.save(dir .. "safetensors/small.safetensors", { a = md.randn { 2, 3 }, b = md.zeros { 0 }, c = md.tensor(1.5) },
        { config = { x = 1, y = { 2, 3 } } })
md.save(dir .. "safetensors/one.safetensors", { w = md.arange(4) })
md.core.png_write(dir .. "png/gray.png", md.rand { 1, 5, 7 } * 2 - 1)
md.core.png_write(dir .. "png/rgb.png", md.rand { 3, 4, 3 } * 2 - 1)
md.core.jpeg_write(dir .. "jpeg/gray.jpg", md.rand { 1, 9, 7 } * 2 - 1, 80)
md.core.jpeg_write(dir .. "jpeg/rgb.jpg", md.rand { 3, 8, 17 } * 2 - 1, 90)
-- IDX: magic (0, 0, type 0x08 unsigned byte, ndim), big-endian sizes, data
local function be32(n) return string.char(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255) end
write(dir .. "idx/images.idx", "\0\0\8\3" .. be32(2) .. be32(3) .. be32(3) .. string.rep("\7", 18))
write(dir .. "idx/labels.idx", "\0\0\8\1" .. be32(4) .. "\0\1\2\9")
write(dir .. "json/object.json", md.core.json_encode { a = { 1, 2.5, "x\n" }, b = true, c = {} })
write(dir .. "json/escapes.json", '["\\u00e9\\ud83d\\ude00", -0.0, 1e-300, null]')
print("seeds written under " .. dir)
