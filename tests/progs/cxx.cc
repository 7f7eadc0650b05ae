// cxx.cc - C++ allocation churn (new/delete, vector, string, map) that must run unchanged under libmemd.

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct node {
        std::string key;
        std::vector<std::uint64_t> values;
};

std::uint64_t churn(unsigned rounds) {
        std::uint64_t sum = 0;
        for (unsigned r = 0; r < rounds; r++) {
                std::map<std::string, std::unique_ptr<node>> m;
                for (unsigned i = 0; i < 2000; i++) {
                        auto n = std::make_unique<node>();
                        n->key = "key-" + std::to_string(i * 7919u % 10007u) + std::string(i % 64, 'x');
                        n->values.assign(i % 97, i);
                        m[n->key] = std::move(n);
                }
                for (auto it = m.begin(); it != m.end();) {
                        sum += it->second->values.size() + it->first.size();
                        it = (sum & 1) ? m.erase(it) : std::next(it);
                }
                int *arr = new int[1000 + r];
                arr[0] = static_cast<int>(r);
                sum += static_cast<std::uint64_t>(arr[0]);
                delete[] arr;
                auto *big = new (std::align_val_t(256)) double[512];
                if (reinterpret_cast<std::uintptr_t>(big) % 256 != 0) {
                        std::fprintf(stderr, "cxx: aligned new not aligned\n");
                        return 0;
                }
                ::operator delete[](big, std::align_val_t(256));
                std::vector<std::string> v;
                for (unsigned i = 0; i < 5000; i++)
                        v.emplace_back(std::to_string(i) + "-" + std::to_string(r));
                sum += v.back().size();
        }
        return sum;
}

} // namespace

int main(int argc, char **argv) {
        unsigned rounds = argc > 1 ? static_cast<unsigned>(std::stoul(argv[1])) : 20;
        std::uint64_t sum = churn(rounds);
        bool threw = false;
        try {
                std::vector<char> huge;
                huge.reserve(static_cast<std::size_t>(-1) / 4);
        } catch (const std::bad_alloc &) {
                threw = true;
        } catch (const std::length_error &) {
                threw = true;
        }
        if (!threw) {
                std::fprintf(stderr, "cxx: huge reserve did not throw\n");
                return 1;
        }
        std::printf("OK %u rounds checksum %llu\n", rounds, static_cast<unsigned long long>(sum));
        return 0;
}
