-- md.nn: modules (Lua) over the C ops. Everything is also reachable as
-- md.nn.<Name>: Module, Sequential, Linear, Conv2d, GroupNorm, Embedding,
-- SiLU, ReLU, Tanh, Sigmoid, Dropout, Flatten, AvgPool2d, Identity, and the
-- diffusion blocks ResBlock, AttentionBlock, Downsample, Upsample, UNet,
-- EncoderUNet.
local nn = { Module = require "moondust.nn.module" }
for k, v in pairs(require "moondust.nn.layers") do nn[k] = v end
for k, v in pairs(require "moondust.nn.unet") do nn[k] = v end
return nn
