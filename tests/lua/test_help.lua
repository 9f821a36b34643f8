-- help(): docs read from the comments beside the code, by function or name.
local T = require "harness"
local md = require "moondust"
local help = require "moondust.help"

T.test("help(md.sample) shows the sampler's options", function()
  local text = help.text(md.sample)
  for _, opt in ipairs { "md.sample(model", "steps", "guidance", "seed", "sampler", "batch_size", "cond_fn" } do
    T.truthy(text:find(opt, 1, true), opt .. " missing from:\n" .. text)
  end
  T.eq(help.text("sample"), text, "by name")
  T.eq(help.text("md.sample"), text, "by full name")
end)

T.test("docs come from the comment above each definition", function()
  T.truthy(help.text(md.image.save_grid):find("PNG grid", 1, true))
  T.truthy(help.text(md.optim.AdamW):find("weight_decay = 0.01", 1, true))
  T.truthy(help.text(md.nn.Conv2d):find("kernel_size", 1, true))
  T.truthy(help.text("md.data.loader"):find("batch_size", 1, true), "a usage line of the module's header")
  T.truthy(help.text(md.conv2d):find("stride", 1, true), "a C function")
  T.eq(help.text(md.ones { 1 }.sum), help.text(md.sum), "a tensor method shares the function's doc")
  T.truthy(help.text(md.nn.EncoderUNet):find("^md%.nn%.EncoderUNet%(cfg%)\n"), "the signature heads a comment that lacks it")
end)

T.test("every public function has a doc", function()
  local missing = help.undocumented { "md", "md.data", "md.nn", "md.optim", "md.metrics", "md.image", "md.sampler",
                                     "md.diffusion", "md.edit", "md.schedule" }
  T.eq(#missing, 0, "undocumented: " .. table.concat(missing, ", "))
  T.eq(#help.undocumented(), 0, "undocumented: " .. table.concat(help.undocumented(), ", "))
end)

T.test("a module lists its functions", function()
  local text = help.text(md.data)
  T.truthy(text:find("Data sets", 1, true), text)
  T.truthy(text:find("md.data: fashion_mnist, float_images, image_folder, image_shape, is_image_set, loader, png_folder, rows", 1, true), text)
end)

T.test("an unknown name or function says so and names the nearest", function()
  T.eq(help.text("sampel"), "help: no documentation for sampel; documented ones near it: md.sample, md.sampler, md.save")
  T.eq(help.text(function() end):match("^help: no documentation for function"), "help: no documentation for function")
  -- a public function added without a comment
  md.data.loaders = function() end
  package.loaded["moondust.help"] = nil
  local fresh = require "moondust.help"
  T.eq(fresh.text(md.data.loaders), "help: no documentation for md.data.loaders; documented ones near it: md.data.loader, md.data.rows")
  T.eq(fresh.undocumented { "md.data" }[1], "md.data.loaders")
  md.data.loaders = nil
  T.truthy(help.text(42):find("help takes a function, a module or a name", 1, true))
end)

T.test("help() is the tour; help(x) prints", function()
  T.eq(help.text(), require("moondust.repl").text)
  local printed
  local real = print
  print = function(s) printed = s end -- luacheck: ignore
  help.help(md.randn)
  print = real -- luacheck: ignore
  T.eq(printed, help.text(md.randn))
end)

T.finish()
