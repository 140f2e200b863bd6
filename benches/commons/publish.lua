-- wrk script: POST the lines of a file of index records to /index/index/,
-- each line at most once, the lines dealt out among wrk's threads.
-- Arguments after `--`: the file, the number of threads, a bearer token.
-- A thread that runs out of lines asks for /_status until the run ends
-- (the benchmark gives it more lines than the run can post).
local threads_started = 0

function setup(thread)
  thread:set("id", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  local threads = tonumber(args[2])
  headers = {
    ["Authorization"] = "bearer " .. args[3],
    ["Content-Type"] = "application/json",
  }
  rows = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % threads == id then
      rows[#rows + 1] = line
    end
    n = n + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  if sent > #rows then
    return wrk.format("GET", "/_status")
  end
  return wrk.format("POST", "/index/index/", headers, rows[sent])
end

function response(status, response_headers, body)
  if status ~= 200 then
    print("refused: " .. status .. " " .. body)
  end
end
