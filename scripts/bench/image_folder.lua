-- How fast md.data.image_folder loads a folder: writes N noisy 64 x 64 RGB
-- images (PNG or JPEG, in 10 class folders) unless the folder exists, then
-- times loading it on 1 and on 2 threads and a few loader batches. Prints
-- figures; never part of make test.
--   scripts/md-lua scripts/bench/image_folder.lua [DIR [N [png|jpg]]]
local md = require "moondust"
local dir, n, ext = arg[1] or "/tmp/moondust-bench-folder", tonumber(arg[2] or 5000), arg[3] or "png"
if not pcall(md.core.list_dir, dir) then
  md.manual_seed(1)
  local base = md.rand { 3, 64, 64 } * 2 - 1
  for c = 1, 10 do md.core.mkdir_p(("%s/c%d"):format(dir, c)) end
  for i = 1, n do
    md.image.save((base * 0.7 + md.rand { 3, 64, 64 } * 0.6 - 0.3):clamp(-1, 1),
      ("%s/c%d/%05d.%s"):format(dir, i % 10 + 1, i, ext))
  end
  print(("wrote %d %s files under %s"):format(n, ext, dir))
end
for _, threads in ipairs { 1, 2 } do
  md.set_num_threads(threads)
  local t0 = md.time()
  local ds = md.data.image_folder(dir)
  local t1 = md.time()
  local L = md.data.loader(ds, { batch_size = 128 })
  for _ = 1, 10 do L:next() end
  print(("%d threads: %s in %.2f s; a batch of 128 as floats in %.1f ms"):format(threads, tostring(ds.images),
    t1 - t0, (md.time() - t1) * 100))
  ds.images:close()
end
