// The `llvm-orc` implementation of the conformance protocol
// (conformance/IMPLEMENTING.md): LLVM's ORC LLJIT with JITLink and the ORC
// runtime's ELF platform, in process (`inproc`) or in
// `llvm-jitlink-executor` over two pipes (`pipe`, SimpleRemoteEPC). Each
// load is a resource tracker of the main JITDylib; removal removes the
// tracker; replace is remove-then-add (ORC has no hot swap that updates
// callers); the session ends with the platform's deinitialize. Out of
// process a call goes through the executor's `runAsIntFunction`: at most
// one integer argument and a 32-bit result. Built by `cargo xtask
// conformance` with llvm-config-19 (see xtask/src/conformance/llvm_orc.rs).

#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/ExecutionEngine/Orc/ObjectFileInterface.h"
#include "llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h"
#include "llvm/ExecutionEngine/Orc/Shared/SimpleRemoteEPCUtils.h"
#include "llvm/ExecutionEngine/Orc/SimpleRemoteEPC.h"
#include "llvm/ExecutionEngine/Orc/TaskDispatch.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Object/Archive.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace llvm;
using namespace llvm::orc;

namespace {

// Where the ORC runtime is (libclang-rt-19-dev); overridable.
const char *orcRuntime() {
  if (const char *path = getenv("SOLDER_ORC_RUNTIME"))
    return path;
  return "/usr/lib/llvm-19/lib/clang/19/lib/linux/liborc_rt-x86_64.a";
}

FILE *replies = nullptr;

void reply(json::Object obj) {
  fflush(nullptr); // the JIT'd code's C stdio first
  std::string line;
  raw_string_ostream os(line);
  os << json::Value(std::move(obj));
  os.flush();
  line.push_back('\n');
  fwrite(line.data(), 1, line.size(), replies);
  fflush(replies);
}

json::Object ok() { return json::Object{{"result", "ok"}}; }

json::Object failed(const std::string &message) {
  return json::Object{{"result", "failed"}, {"message", message}};
}

// An LLVM error as a link error of the portable vocabulary.
json::Object linkError(Error err) {
  std::string message = toString(std::move(err));
  std::string kind = "unsupported";
  if (message.find("Symbols not found") != std::string::npos ||
      message.find("undefined") != std::string::npos)
    kind = "undefined-symbol";
  else if (message.find("Duplicate definition") != std::string::npos)
    kind = "duplicate-symbol";
  else if (message.find("out of range") != std::string::npos ||
           message.find("Relocation target") != std::string::npos)
    kind = "out-of-range";
  else if (message.find("not an object") != std::string::npos ||
           message.find("malformed") != std::string::npos ||
           message.find("truncated") != std::string::npos ||
           message.find("Truncated") != std::string::npos ||
           message.find("invalid") != std::string::npos)
    kind = "malformed";
  return json::Object{
      {"result", "link_error"}, {"kind", kind}, {"message", message}};
}

// Where llvm-jitlink-executor is; overridable.
const char *executorProgram() {
  if (const char *path = getenv("SOLDER_LLVM_JITLINK_EXECUTOR"))
    return path;
  return "/usr/lib/llvm-19/bin/llvm-jitlink-executor";
}

// Starts llvm-jitlink-executor on two pipes; its pid, and the control for
// it.
Expected<std::unique_ptr<ExecutorProcessControl>> startExecutor(pid_t &pid) {
  int toExecutor[2], fromExecutor[2];
  if (pipe(toExecutor) != 0 || pipe(fromExecutor) != 0)
    return make_error<StringError>("pipe failed", inconvertibleErrorCode());
  pid = fork();
  if (pid < 0)
    return make_error<StringError>("fork failed", inconvertibleErrorCode());
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(toExecutor[1]);
    close(fromExecutor[0]);
    std::string arg = "filedescs=" + std::to_string(toExecutor[0]) + "," +
                      std::to_string(fromExecutor[1]);
    execl(executorProgram(), executorProgram(), arg.c_str(), (char *)nullptr);
    _exit(127);
  }
  close(toExecutor[0]);
  close(fromExecutor[1]);
  auto epc = SimpleRemoteEPC::Create<FDSimpleRemoteEPCTransport>(
      std::make_unique<DynamicThreadPoolTaskDispatcher>(std::nullopt),
      SimpleRemoteEPC::Setup(), fromExecutor[0], toExecutor[1]);
  if (!epc)
    return epc.takeError();
  return std::unique_ptr<ExecutorProcessControl>(std::move(*epc));
}

// How the executor process ended, as a reply.
json::Object executorEnded(pid_t pid, const std::string &what) {
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid) {
    if (WIFSIGNALED(status))
      return json::Object{{"result", "crashed"},
                          {"signal", WTERMSIG(status)},
                          {"report", what}};
    if (WIFEXITED(status))
      return json::Object{{"result", "exited"},
                          {"status", WEXITSTATUS(status)}};
  }
  return failed(what);
}

struct Session {
  std::unique_ptr<LLJIT> jit;
  // The executor process, out of process (0 in process).
  pid_t executor = 0;
  std::map<std::string, ResourceTrackerSP> modules;
  std::vector<std::string> archives;

  JITDylib &main() { return jit->getMainJITDylib(); }
  ExecutionSession &es() { return jit->getExecutionSession(); }

  // Adds one object to `tracker`, and returns its defined names so the
  // load can be linked now (ORC links on first lookup).
  Expected<std::vector<SymbolStringPtr>>
  addObject(ResourceTrackerSP tracker, std::unique_ptr<MemoryBuffer> buffer) {
    auto interface = getObjectFileInterface(es(), buffer->getMemBufferRef());
    if (!interface)
      return interface.takeError();
    std::vector<SymbolStringPtr> names;
    for (auto &[name, flags] : interface->SymbolFlags)
      names.push_back(name);
    if (auto err = jit->addObjectFile(tracker, std::move(buffer)))
      return std::move(err);
    return names;
  }

  Error addArchive(const json::Object &archive, ResourceTrackerSP tracker,
                   std::vector<SymbolStringPtr> &names) {
    std::string name = archive.getString("name").value_or("").str();
    std::string path = archive.getString("path").value_or("").str();
    bool whole = archive.getBoolean("whole").value_or(false);
    if (std::find(archives.begin(), archives.end(), name) != archives.end())
      return Error::success();
    archives.push_back(name);
    if (!whole) {
      auto generator = StaticLibraryDefinitionGenerator::Load(
          jit->getObjLinkingLayer(), path.c_str());
      if (!generator)
        return generator.takeError();
      main().addGenerator(std::move(*generator));
      return Error::success();
    }
    auto buffer = errorOrToExpected(MemoryBuffer::getFile(path));
    if (!buffer)
      return buffer.takeError();
    auto parsed = object::Archive::create((*buffer)->getMemBufferRef());
    if (!parsed)
      return parsed.takeError();
    Error err = Error::success();
    for (auto &child : (*parsed)->children(err)) {
      auto member = child.getMemoryBufferRef();
      if (!member)
        return member.takeError();
      auto added = addObject(
          tracker, MemoryBuffer::getMemBufferCopy(member->getBuffer(),
                                                  member->getBufferIdentifier()));
      if (!added)
        return added.takeError();
      names.insert(names.end(), added->begin(), added->end());
    }
    return err;
  }

  json::Object load(const json::Object &request) {
    std::string module = request.getString("module").value_or("").str();
    auto tracker = main().createResourceTracker();
    std::vector<SymbolStringPtr> names;
    if (auto *archives = request.getArray("archives"))
      for (auto &archive : *archives)
        if (auto *object = archive.getAsObject())
          if (auto err = addArchive(*object, tracker, names))
            return linkError(std::move(err));
    if (auto *objects = request.getArray("objects"))
      for (auto &input : *objects) {
        auto path = input.getAsObject()->getString("path").value_or("").str();
        auto buffer = errorOrToExpected(MemoryBuffer::getFile(path));
        if (!buffer)
          return linkError(buffer.takeError());
        auto added = addObject(tracker, std::move(*buffer));
        if (!added) {
          cantFail(tracker->remove());
          return linkError(added.takeError());
        }
        names.insert(names.end(), added->begin(), added->end());
      }
    // Link now: look up everything the load defines, then run its
    // initializers through the platform.
    SymbolLookupSet lookup;
    for (auto &name : names)
      lookup.add(name, SymbolLookupFlags::WeaklyReferencedSymbol);
    if (auto found = es().lookup(makeJITDylibSearchOrder(&main()), lookup);
        !found) {
      cantFail(tracker->remove());
      return linkError(found.takeError());
    }
    if (auto err = jit->initialize(main())) {
      cantFail(tracker->remove());
      return linkError(std::move(err));
    }
    modules[module] = tracker;
    return ok();
  }

  // Flushes the executor's C stdio (out of process), so output is
  // attributed to the step that printed it.
  void flushExecutor() {
    if (!executor)
      return;
    if (auto fflushAddr = jit->lookup("fflush"))
      consumeError(es().getExecutorProcessControl()
                       .runAsIntFunction(*fflushAddr, 0)
                       .takeError());
    else
      consumeError(fflushAddr.takeError());
  }

  json::Object call(const json::Object &request) {
    std::string symbol = request.getString("symbol").value_or("").str();
    auto address = jit->lookup(symbol);
    if (!address) {
      consumeError(address.takeError());
      return json::Object{{"result", "missing_symbol"}, {"name", symbol}};
    }
    int64_t args[6] = {0, 0, 0, 0, 0, 0};
    size_t count = 0;
    if (auto *given = request.getArray("args"))
      for (; count < given->size() && count < 6; ++count)
        args[count] = (*given)[count].getAsInteger().value_or(0);
    if (executor) {
      if (count > 1)
        return failed("out of process, ORC calls take at most one integer "
                      "argument (runAsIntFunction)");
      auto result = es().getExecutorProcessControl().runAsIntFunction(
          *address, int(args[0]));
      if (!result)
        return executorEnded(executor, toString(result.takeError()));
      flushExecutor();
      return json::Object{{"result", "returned"}, {"value", int64_t(*result)}};
    }
    using Fn = uint64_t (*)(int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t);
    uint64_t value = address->toPtr<Fn>()(args[0], args[1], args[2], args[3],
                                          args[4], args[5]);
    return json::Object{{"result", "returned"}, {"value", int64_t(value)}};
  }

  json::Object remove(const std::string &module) {
    auto found = modules.find(module);
    if (found == modules.end())
      return json::Object{{"result", "no_module"}, {"name", module}};
    if (auto err = found->second->remove())
      return failed(toString(std::move(err)));
    modules.erase(found);
    return ok();
  }

  json::Object replace(const json::Object &request) {
    std::string module = request.getString("module").value_or("").str();
    int64_t repeat = request.getInteger("repeat").value_or(1);
    json::Object result = ok();
    for (int64_t i = 0; i < repeat; ++i) {
      result = remove(module);
      if (result.getString("result") != "ok")
        return result;
      json::Object add{{"module", module}};
      if (auto *objects = request.getArray("objects"))
        add["objects"] = json::Array(*objects);
      result = load(add);
      if (result.getString("result") != "ok")
        return result;
    }
    return result;
  }
};

json::Object start(Session &session, const json::Object &request) {
  auto mode = request.getString("mode");
  if (request.getString("format") != "elf" ||
      (mode != "inproc" && mode != "pipe"))
    return failed("llvm-orc runs ELF in process or over pipes");
  LLJITBuilder builder;
  builder.setPlatformSetUp(ExecutorNativePlatform(orcRuntime()));
  if (mode == "pipe") {
    auto epc = startExecutor(session.executor);
    if (!epc)
      return failed(toString(epc.takeError()));
    builder.setExecutorProcessControl(std::move(*epc));
  }
  auto jit = builder.create();
  if (!jit)
    return failed(toString(jit.takeError()));
  session.jit = std::move(*jit);
  if (auto *spec = request.getObject("session"))
    if (auto *absolute = spec->getObject("absolute")) {
      SymbolMap symbols;
      for (auto &[name, value] : *absolute)
        symbols[session.es().intern(name.str())] = {
            ExecutorAddr(uint64_t(value.getAsInteger().value_or(0))),
            JITSymbolFlags::Exported};
      if (auto err = session.main().define(absoluteSymbols(symbols)))
        return failed(toString(std::move(err)));
    }
  return ok();
}

int descriptor(const char *name) {
  const char *value = getenv(name);
  return value ? atoi(value) : -1;
}

} // namespace

int main() {
  InitializeNativeTarget();
  InitializeNativeTargetAsmPrinter();
  int in = descriptor("SOLDER_CONFORMANCE_REQUESTS_FD");
  int out = descriptor("SOLDER_CONFORMANCE_REPLIES_FD");
  if (in < 3 || out < 3) {
    fprintf(stderr, "llvm-orc adapter: start it from the conformance runner\n");
    return 2;
  }
  FILE *requests = fdopen(in, "r");
  replies = fdopen(out, "w");
  reply(json::Object{
      {"protocol", 1},
      {"name", "llvm-orc"},
      {"version", "LLVM " LLVM_VERSION_STRING " (LLJIT, JITLink, ORC runtime)"},
      {"formats", json::Array{"elf"}},
      {"modes", json::Array{"inproc", "pipe"}},
      {"capabilities", json::Array{"remove", "replace", "archives", "absolute",
                                   "position-dependent"}},
  });
  Session session;
  char *line = nullptr;
  size_t size = 0;
  while (getline(&line, &size, requests) > 0) {
    auto parsed = json::parse(line);
    if (!parsed || !parsed->getAsObject()) {
      reply(failed(parsed ? "not an object" : toString(parsed.takeError())));
      continue;
    }
    auto &request = *parsed->getAsObject();
    auto op = request.getString("op").value_or("").str();
    if (op == "start")
      reply(start(session, request));
    else if (!session.jit)
      reply(failed("the first request must be `start`"));
    else if (op == "load") {
      auto result = session.load(request);
      session.flushExecutor();
      reply(std::move(result));
    }
    else if (op == "call")
      reply(session.call(request));
    else if (op == "remove") {
      auto result = session.remove(request.getString("module").value_or("").str());
      session.flushExecutor();
      reply(std::move(result));
    }
    else if (op == "replace")
      reply(session.replace(request));
    else if (op == "end") {
      if (auto err = session.jit->deinitialize(session.main())) {
        reply(failed(toString(std::move(err))));
        continue;
      }
      if (session.executor) {
        // The executor ends as a program does (its own exit runs what
        // the C library holds), then this process.
        consumeError(session.es().getExecutorProcessControl().disconnect());
        int status = 0;
        waitpid(session.executor, &status, 0);
      }
      // As a native program ends: exit() runs the handlers registered
      // with the C library (the JIT'd code's memory is still mapped: the
      // LLJIT instance is never destroyed).
      fflush(nullptr);
      exit(0);
    } else
      reply(failed("unsupported request " + op));
  }
  free(line);
  fflush(nullptr);
  _exit(0);
}
