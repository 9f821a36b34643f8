local md = require "moondust"
-- Tensor methods and creation helpers written in Lua (filled by the tensor area).
return md
