-- Entry point for scripts/moondust.
require("moondust.cli").main(arg)
